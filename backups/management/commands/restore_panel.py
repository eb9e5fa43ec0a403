"""manage.py restore_panel --repo DIR --password-file FILE [--snapshot ID] [--files-to DIR]
[--force]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from backups.panel_self import PanelBackupError, restore


class Command(BaseCommand):
    help = "Restore the panel's database and key files from a backup_panel snapshot."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repo", required=True)
        parser.add_argument("--password-file", required=True)
        parser.add_argument("--snapshot", default="latest")
        parser.add_argument(
            "--files-to", default="", help="put the key files here (default: where they were)"
        )
        parser.add_argument(
            "--force", action="store_true", help="replace an existing database and files"
        )

    def handle(self, *args, **opts) -> None:
        snapshot = opts["snapshot"]
        if snapshot != "latest" and not (
            8 <= len(snapshot) <= 64 and all(c in "0123456789abcdef" for c in snapshot)
        ):
            raise CommandError("--snapshot: a snapshot id (hex) or 'latest'.")
        try:
            result = restore(
                opts["repo"],
                opts["password_file"],
                snapshot=snapshot,
                files_to=opts["files_to"],
                force=opts["force"],
            )
        except PanelBackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Restored the {result['manifest']['engine']} database of "
            f"{result['manifest']['created_at']} and {len(result['files'])} file(s)"
        )
