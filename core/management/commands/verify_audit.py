from django.core.management.base import BaseCommand, CommandError

from core.audit import verify_chain


class Command(BaseCommand):
    help = "Check the audit log's hash chain; report the first tampered or missing entry."

    def handle(self, *args, **options):
        checked, problem = verify_chain()
        if problem:
            raise CommandError(f"Audit log broken after {checked} good entries: {problem.message}")
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {checked} entries verified."))
