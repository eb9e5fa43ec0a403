"""``manage.py bill_period [--period YYYY-MM] [--no-email]``: collect, rate and issue."""

import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.tasks import run_period
from billing.usage import BillingPeriod


class Command(BaseCommand):
    help = "Collect usage, rate it and issue the invoices of one month (default: last month)."

    def add_arguments(self, parser):
        parser.add_argument("--period", help="YYYY-MM")
        parser.add_argument("--no-email", action="store_true")

    def handle(self, *args, period=None, no_email=False, **options):
        if period:
            try:
                found = BillingPeriod.parse(period)
            except ValueError as exc:
                raise CommandError("--period is YYYY-MM") from exc
        else:
            first = timezone.now().date().replace(day=1)
            found = BillingPeriod.month_of(first - timedelta(days=1))
        self.stdout.write(json.dumps(run_period(found, send=not no_email)))
