from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.audit import read_witness, verify_chain


class Command(BaseCommand):
    help = (
        "Check the audit log's keyed hash chain, and that every head written out earlier is "
        "still in it; report the first tampered or missing entry."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--witness",
            default=settings.AUDIT_WITNESS_FILE,
            help="File of heads written out by the witness task (default: "
            "PANEL_AUDIT_WITNESS_FILE); a copy kept elsewhere is stronger.",
        )

    def handle(self, *args, witness, **options):
        checked, problem = verify_chain(witness=read_witness(witness))
        if problem:
            raise CommandError(f"Audit log broken after {checked} good entries: {problem.message}")
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {checked} entries verified."))
