"""manage.py restore_panel (--repo DIR --password-file FILE | --target NAME |
--target-file FILE) [--snapshot ID] [--files-to DIR] [--force]"""

from __future__ import annotations

from contextlib import nullcontext

from django.core.management.base import BaseCommand, CommandError

from backups.panel_self import (
    PanelBackupError,
    plain_repository,
    restore,
    target_by_name,
    target_from_file,
    target_repository,
)


class Command(BaseCommand):
    help = "Restore the panel's database and key files from a backup_panel snapshot."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repo")
        parser.add_argument("--password-file")
        parser.add_argument(
            "--target", help="a backup target stored in the configured (existing) database"
        )
        parser.add_argument(
            "--target-file",
            help="a target written by backup_panel --export-target (a fresh machine)",
        )
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
        given = [bool(opts["repo"] or opts["password_file"]), bool(opts["target"])]
        given.append(bool(opts["target_file"]))
        if sum(given) != 1:
            raise CommandError("Give --repo and --password-file, --target, or --target-file.")
        try:
            if opts["target"] or opts["target_file"]:
                target = (
                    target_by_name(opts["target"])
                    if opts["target"]
                    else target_from_file(opts["target_file"])
                )
                context = target_repository(target)
            else:
                if not (opts["repo"] and opts["password_file"]):
                    raise CommandError("--repo and --password-file go together.")
                context = nullcontext(plain_repository(opts["repo"], opts["password_file"]))
            with context as restic:
                result = restore(
                    restic, snapshot=snapshot, files_to=opts["files_to"], force=opts["force"]
                )
        except PanelBackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Restored the {result['manifest']['engine']} database of "
            f"{result['manifest']['created_at']} and {len(result['files'])} file(s)"
        )
