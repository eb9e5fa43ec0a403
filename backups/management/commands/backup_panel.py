"""manage.py backup_panel --repo DIR --password-file FILE [--include FILE ...]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from backups.panel_self import PanelBackupError, backup


class Command(BaseCommand):
    help = "Back up the panel's own database and key files into a restic repository."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repo", required=True, help="restic repository (made when new)")
        parser.add_argument("--password-file", required=True, help="its password, in a file")
        parser.add_argument(
            "--include",
            action="append",
            default=[],
            help="another file to keep (e.g. the environment file holding the keys)",
        )

    def handle(self, *args, **opts) -> None:
        try:
            result = backup(opts["repo"], opts["password_file"], include=opts["include"])
        except PanelBackupError as exc:
            raise CommandError(str(exc)) from exc
        names = ", ".join(f["name"] for f in result["manifest"]["files"]) or "no key files"
        self.stdout.write(
            f"Snapshot {result['snapshot_id'][:8]}: {result['manifest']['engine']} database "
            f"and {names}"
        )
