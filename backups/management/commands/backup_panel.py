"""manage.py backup_panel (--repo DIR --password-file FILE | --target NAME
[--export-target FILE [--force]]) [--include FILE ...]"""

from __future__ import annotations

from contextlib import nullcontext

from django.core.management.base import BaseCommand, CommandError

from backups.panel_self import (
    PanelBackupError,
    backup,
    export_target,
    plain_repository,
    target_by_name,
    target_repository,
)


class Command(BaseCommand):
    help = "Back up the panel's own database and key files into a restic repository."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repo", help="restic repository (a directory is made when new)")
        parser.add_argument("--password-file", help="the repository's password, in a file")
        parser.add_argument(
            "--target", help="a stored backup target instead of --repo/--password-file"
        )
        parser.add_argument(
            "--export-target",
            metavar="FILE",
            help="with --target: also write its settings and secrets to FILE (0600), to "
            "restore onto a fresh machine (restore_panel --target-file)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="with --export-target: replace FILE when it exists",
        )
        parser.add_argument(
            "--include",
            action="append",
            default=[],
            help="another file to keep (e.g. the environment file holding the keys)",
        )

    def handle(self, *args, **opts) -> None:
        if bool(opts["target"]) == bool(opts["repo"] or opts["password_file"]):
            raise CommandError("Give --target, or --repo and --password-file.")
        if opts["export_target"] and not opts["target"]:
            raise CommandError("--export-target goes with --target.")
        try:
            if opts["target"]:
                target = target_by_name(opts["target"])
                context, init_dir = target_repository(target), ""
            else:
                if not (opts["repo"] and opts["password_file"]):
                    raise CommandError("--repo and --password-file go together.")
                context = nullcontext(plain_repository(opts["repo"], opts["password_file"]))
                init_dir = opts["repo"] if opts["repo"].startswith("/") else ""
            with context as restic:
                result = backup(restic, include=opts["include"], init_dir=init_dir)
            if opts["export_target"]:
                export_target(target, opts["export_target"], force=opts["force"])
        except PanelBackupError as exc:
            raise CommandError(str(exc)) from exc
        names = ", ".join(f["name"] for f in result["manifest"]["files"]) or "no key files"
        self.stdout.write(
            f"Snapshot {result['snapshot_id'][:8]}: {result['manifest']['engine']} database "
            f"and {names}"
        )
