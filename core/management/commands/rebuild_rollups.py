"""Recount the dashboard's daily operation totals from the operations table."""

from django.core.management.base import BaseCommand

from core import rollups


class Command(BaseCommand):
    help = "Recompute the daily counts of finished operations (core.OperationDay)."

    def handle(self, *args, **options):
        rows = rollups.rebuild()
        self.stdout.write(f"{rows} daily rows rebuilt.")
