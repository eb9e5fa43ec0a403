"""Operation tasks of backups (django-q2 runs them through core.operations), and the
schedule that starts due backups."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from django.utils import timezone

from backups.models import BackupJob, BackupRun, BackupTarget
from backups.restic import Repository, ResticError
from core.operations import OperationContext, OperationError

log = logging.getLogger(__name__)


def _transport(server):
    from servers.connection import open_transport
    from servers.transport import TransportError

    try:
        return open_transport(server)
    except TransportError as exc:
        raise OperationError(f"Cannot reach {server.name}: {exc}") from exc


# ------------------------------------------------------------------ targets


def check_target(ctx: OperationContext, target_id: int) -> str:
    """``restic init`` a new repository (or open an existing one with the password), then
    measure the free space where it lives."""
    target = BackupTarget.objects.select_related("server").filter(pk=target_id).first()
    if target is None:
        raise OperationError("The target was deleted.")
    ctx.progress(10, f"Opening {target.repository} from {target.server.name}")
    t = _transport(target.server)
    try:
        if target.kind == BackupTarget.Kind.LOCAL:
            t.run(["mkdir", "-p", "-m", "700", "--", target.path]).check()
        with Repository(target, t, target.server, f"target-{target.uuid.hex}") as repo:
            done = repo.init_or_verify()
            ctx.progress(70, f"Repository {done}; measuring free space")
            free = repo.free_bytes()
    except Exception as exc:
        BackupTarget.objects.filter(pk=target.pk).update(
            status=BackupTarget.Status.FAILED,
            status_message=str(exc)[:2000],
            checked_at=timezone.now(),
        )
        raise OperationError(str(exc)) from exc
    BackupTarget.objects.filter(pk=target.pk).update(
        status=BackupTarget.Status.READY,
        status_message="",
        free_bytes=free,
        checked_at=timezone.now(),
    )
    space = f"; {free / 2**30:.1f} GiB free" if free is not None else ""
    return f"Repository {done}{space}"


def verify_target(ctx: OperationContext, target_id: int) -> str:
    """``restic check``: the repository's structure is sound. A failure marks the target
    unreachable, which alerts for every job that backs up into it."""
    target = BackupTarget.objects.select_related("server").filter(pk=target_id).first()
    if target is None:
        raise OperationError("The target was deleted.")
    ctx.progress(10, f"Checking {target.repository}")
    t = _transport(target.server)
    try:
        with Repository(target, t, target.server, f"target-{target.uuid.hex}") as repo:
            repo.run("check", timeout=6 * 3600)
    except Exception as exc:
        BackupTarget.objects.filter(pk=target.pk).update(
            status=BackupTarget.Status.FAILED,
            status_message=f"restic check: {exc}"[:2000],
            checked_at=timezone.now(),
        )
        raise OperationError(str(exc)) from exc
    BackupTarget.objects.filter(pk=target.pk).update(
        status=BackupTarget.Status.READY, status_message="", checked_at=timezone.now()
    )
    return "The repository is sound (restic check)."


def _take_pending(target_pk: int, new: str, *, store: bool) -> bool:
    """Clear the pending password if it is still ``new`` (compared in Python: the field is
    encrypted), storing it as the password when ``store``."""
    from django.db import transaction

    with transaction.atomic():
        row = BackupTarget.objects.select_for_update().filter(pk=target_pk).first()
        if row is None or row.pending_password != new:
            return False
        if store:
            row.password = new
        row.pending_password = ""
        row.save(update_fields=["password", "pending_password"])
    return True


def _drop_key(ctx: OperationContext, repo: Repository, password: str, key: str) -> None:
    """Remove a key this change added and will not record (restic refuses to remove the
    key in use, so with the recorded password again); a key left over is logged."""
    try:
        repo.use_password(password)
        repo.run("key", "remove", key, timeout=300)
    except ResticError as exc:
        ctx.log(f"The new key {key} is still in the repository: {exc}", "warning")
    else:
        ctx.log(f"Removed the new key {key} again.")


def change_password(ctx: OperationContext, target_id: int) -> str:
    """Give the repository the target's ``pending_password``: ``restic key add`` with it,
    open the repository with it, store it as the password (only now: until then the old
    one is recorded and still works), then ``restic key remove`` the old key. Interrupted
    anywhere, the password recorded opens the repository."""
    target = BackupTarget.objects.select_related("server").filter(pk=target_id).first()
    if target is None:
        raise OperationError("The target was deleted.")
    new = target.pending_password
    if not new:
        raise OperationError("No new password is waiting.")
    t = _transport(target.server)
    with Repository(target, t, target.server, f"target-{target.uuid.hex}") as repo:
        new_key = ""
        try:
            ctx.progress(10, "Finding the current key")
            old_keys = [str(k.get("id")) for k in repo.key_list() if k.get("current")]
            ctx.progress(30, "Adding a key for the new password (restic key add)")
            new_key = repo.add_key(new)
            repo.use_password(new)
            ctx.progress(50, "Opening the repository with the new password")
            repo.run("cat", "config", timeout=300)
        except ResticError as exc:
            if new_key:
                _drop_key(ctx, repo, target.password, new_key)
            _take_pending(target.pk, new, store=False)
            raise OperationError(f"The password was not changed: {exc}") from exc
        if not _take_pending(target.pk, new, store=True):
            _drop_key(ctx, repo, target.password, new_key)
            raise OperationError("Another password change started meanwhile.")
        ctx.log(f"New password stored (key {new_key}); removing the old key.")
        ctx.progress(75, "Removing the old key (restic key remove)")
        left = []
        for key in old_keys:
            try:
                repo.run("key", "remove", key, timeout=300)
            except ResticError as exc:
                left.append(key)
                ctx.log(f"The old key {key} is still there: {exc}", "warning")
    if left:
        return f"Password changed; the old key {', '.join(left)} still opens the repository."
    return "Password changed; the old key was removed."


def verify_all() -> int:
    """Weekly: ``restic check`` every target in use."""
    from backups import services

    started = 0
    for target in BackupTarget.objects.filter(jobs__isnull=False).distinct():
        try:
            services.start_verify_target(target, actor=None)
            started += 1
        except Exception:  # one target must not stop the others
            log.exception("could not start the check of target %s", target.pk)
    return started


# ------------------------------------------------------------------ backups


def _my_cnf(db_server) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        "[client]\n"
        f"user={quoted(db_server.admin_user)}\n"
        f"password={quoted(db_server.admin_password or '')}\n"
        f"host={quoted(db_server.address)}\n"
        f"port={int(db_server.port)}\n"
    )


def _pgpass(db_server) -> str:
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    return (
        f"{esc(db_server.address)}:{int(db_server.port)}:*:{esc(db_server.admin_user)}:"
        f"{esc(db_server.admin_password or '')}\n"
    )


def _credential(db_server) -> tuple[str, str]:
    """(file name, content) of a database server's administrative login."""
    name = f"db-{db_server.uuid.hex}"
    if db_server.engine == "mariadb":
        return f"{name}.cnf", _my_cnf(db_server)
    return f"{name}.pgpass", _pgpass(db_server)


def _credential_file(repo: Repository, db_server) -> str:
    return repo.secret_file(*_credential(db_server))


def dump_argv(db_server, name: str, out: str, credential: str) -> list[str]:
    """A consistent dump of one database as argv (names checked by the databases app)."""
    from websites.databases.naming import validate_full_name

    validate_full_name(name)
    if db_server.engine == "mariadb":
        return [
            "mysqldump",
            f"--defaults-extra-file={credential}",
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            f"--result-file={out}",
            name,
        ]
    return [
        "env",
        f"PGPASSFILE={credential}",
        "pg_dump",
        "-w",
        "-Fc",
        "-h",
        db_server.address,
        "-p",
        str(int(db_server.port)),
        "-U",
        db_server.admin_user,
        "-f",
        out,
        "--",
        name,
    ]


# Starts a backup's dumps directory afresh ($1) and prints which of the other paths exist.
PREPARE = (
    'rm -rf -- "$1" && mkdir -m 700 -- "$1" && shift && '
    'for p; do if [ -e "$p" ]; then printf "%s\\n" "$p"; fi; done'
)


def _account_databases(account):
    from websites.databases.models import CustomerDatabase, Status

    return list(
        CustomerDatabase.objects.filter(owner=account.user, status=Status.ACTIVE)
        .select_related("db_server", "db_server__server")
        .order_by("name")
    )


def _config_paths(account) -> list[str]:
    """The vhost, pool and unit files of the account's sites on its server, as the
    websites app renders them (their paths; the files are read from the server)."""
    from servers.engine import profile_for
    from websites.apply import WebsiteFiles
    from websites.models import Website

    sites = Website.objects.filter(server=account.server, owner=account.user)
    units = {s.unit for s in sites}
    if not units:
        return []
    provider = WebsiteFiles()
    paths = []
    for item in provider.files(account.server, profile_for(account.server), units):
        path = getattr(item, "path", None)
        if path:
            paths.append(path)
    return sorted(set(paths))


def _home(account) -> str:
    from websites.sysaccounts import home_of

    return home_of(account.server, account.name)


def run_backup(ctx: OperationContext, job_id: int) -> str:
    """Dump the account's databases, write the manifest, ``restic backup`` the home, the
    dumps and the configuration, then apply retention; the run records what restic said."""
    job = (
        BackupJob.objects.select_related("account__server", "account__user", "target")
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        raise OperationError("The backup job was deleted.")
    run = BackupRun.objects.create(job=job, operation=ctx.op)
    try:
        summary = _backup(ctx, job, run)
    except Exception as exc:
        message = str(exc) or exc.__class__.__name__
        now = timezone.now()
        BackupRun.objects.filter(pk=run.pk).update(
            state=BackupRun.State.FAILED, error=message[:4000], finished_at=now
        )
        BackupJob.objects.filter(pk=job.pk).update(
            last_status=BackupJob.Status.FAILED, last_error=message[:4000], last_run_at=now
        )
        if isinstance(exc, ResticError):
            raise OperationError(message) from exc
        raise
    return (
        f"Snapshot {summary.snapshot_id[:8]}: {summary.files} files, "
        f"{summary.size_bytes / 2**20:.1f} MiB, {summary.bytes_added / 2**20:.1f} MiB added"
    )


def _backup(ctx: OperationContext, job: BackupJob, run: BackupRun):
    account, target = job.account, job.target
    server = account.server
    t = _transport(server)
    started = time.monotonic()
    home = _home(account)
    databases = _account_databases(account)
    repo = Repository(target, t, server, f"job-{job.uuid.hex}")
    # The database servers' credentials go with the repository's secrets (one round
    # trip); the dumps directory is removed with them whatever happens.
    for db_server in {db.db_server.pk: db.db_server for db in databases}.values():
        repo.extra.update([_credential(db_server)])
    dumps = f"{repo.dir}/dumps"
    repo.scratch.append(dumps)
    with repo:
        # A fresh dumps directory, and which of the sites' configuration files exist.
        res = t.run(["sh", "-c", PREPARE, "prepare", dumps, *_config_paths(account)], timeout=60)
        configs = [p for p in res.check().stdout.splitlines() if p]
        manifest_dbs = []
        for i, db in enumerate(databases):
            ctx.progress(2 + 10 * i // max(1, len(databases)), f"Dumping {db.name}")
            ext = "sql" if db.db_server.engine == "mariadb" else "dump"
            out = f"{dumps}/{db.name}-{db.uuid.hex[:8]}.{ext}"
            credential = _credential_file(repo, db.db_server)
            res = t.run(dump_argv(db.db_server, db.name, out, credential), timeout=6 * 3600)
            if res.code != 0:
                raise OperationError(f"The dump of {db.name} failed: {res.stderr.strip()[-500:]}")
            manifest_dbs.append(
                {
                    "uuid": db.uuid.hex,
                    "name": db.name,
                    "engine": db.db_server.engine,
                    "db_server": db.db_server.name,
                    "dump": out,
                    "format": "sql" if ext == "sql" else "pg_dump custom",
                }
            )
        from websites.models import Website

        sites = [
            {"domain": s.domain, "kind": s.kind, "dir": f"{home}/sites/{s.domain}"}
            for s in Website.objects.filter(server=server, owner=account.user).order_by("domain")
        ]
        manifest = {
            "format": 1,
            "account": account.name,
            "server": server.name,
            "home": home,
            "sites": sites,
            "databases": manifest_dbs,
            "configs": configs,
            "created_at": timezone.now().isoformat(),
        }
        t.write_file(f"{dumps}/manifest.json", json.dumps(manifest, indent=1).encode(), mode=0o600)
        ctx.progress(15, "Backing up files, dumps and configuration")
        last = {"at": 0.0, "pct": -1}

        def status(msg: dict) -> None:
            pct = int(15 + 70 * float(msg.get("percent_done") or 0))
            now = time.monotonic()
            if pct != last["pct"] and now - last["at"] >= 1:
                last.update(at=now, pct=pct)
                done, total = msg.get("files_done") or 0, msg.get("total_files") or 0
                ctx.progress(pct, f"Backing up: {done} of {total} files")

        parent = (
            BackupRun.objects.filter(job=job, state=BackupRun.State.SUCCEEDED, forgotten=False)
            .exclude(snapshot_id="")
            .values_list("snapshot_id", flat=True)
            .first()
        )
        summary = repo.backup(
            [p for p in [home, dumps, *configs] if p],
            host=f"panel-{server.uuid.hex[:12]}",
            tags=["panel", job.tag],
            parent=parent or "",
            on_status=status,
        )
        for warning in summary.warnings[:20]:
            ctx.log(f"Not read: {warning}", "warning")
        now = timezone.now()
        BackupRun.objects.filter(pk=run.pk).update(
            state=BackupRun.State.SUCCEEDED,
            finished_at=now,
            snapshot_id=summary.snapshot_id,
            files=summary.files,
            size_bytes=summary.size_bytes,
            bytes_added=summary.bytes_added,
            duration_s=round(time.monotonic() - started, 3),
            manifest=manifest,
        )
        BackupJob.objects.filter(pk=job.pk).update(
            last_status=BackupJob.Status.OK,
            last_error="",
            last_success_at=now,
            last_size_bytes=summary.size_bytes,
        )
        ctx.progress(88, f"Retention: keep {job.keep_daily} daily, {job.keep_weekly} weekly")
        kept = BackupRun.objects.filter(job=job, forgotten=False).exclude(snapshot_id="")
        try:
            # The first snapshot of a job: retention keeps at least the latest, so restic
            # forget (a repository lock and a read of every snapshot) has nothing to do.
            removed = (
                repo.forget(job.tag, job.keep_daily, job.keep_weekly)
                if kept.filter(state=BackupRun.State.SUCCEEDED).count() > 1
                else []
            )
        except ResticError as exc:  # the backup itself is safe; say so and go on
            ctx.log(f"Retention failed: {exc}", "warning")
        else:
            # restic's summary gives the short id, forget the full one.
            gone = [
                pk
                for pk, short in kept.values_list("pk", "snapshot_id")
                if any(full.startswith(short) for full in removed)
            ]
            BackupRun.objects.filter(pk__in=gone).update(forgotten=True)
            if removed:
                ctx.log(f"Retention removed {len(removed)} snapshot(s).")
    return summary


def run_due() -> int:
    """Every few minutes: start the backups whose period has passed."""
    from backups import services

    now = timezone.now()
    started = 0
    for job in BackupJob.objects.filter(enabled=True).select_related("account__user", "target"):
        due = job.last_run_at is None or (now - job.last_run_at).total_seconds() >= (
            job.every_minutes * 60
        )
        if not due or services.busy(job):
            continue
        try:
            services.start_backup(job, actor=None)
            started += 1
        except Exception:  # one job must not stop the others
            log.exception("could not start the backup of job %s", job.pk)
    return started


def backup_alert_source(rule, now):
    """``backup_missing``: enabled jobs the rule's owner may see whose last run failed,
    whose repository failed its check, whose latest test restore failed, or with no
    success within one period (since the job was made, for new ones)."""
    from core.policy import restrict
    from monitoring.alerts import Finding

    jobs = restrict(BackupJob, rule.owner).filter(enabled=True)
    for job in jobs.select_related("account", "target"):
        period = job.every_minutes * 60
        since = job.last_success_at or job.created_at
        subject, label = f"backup:{job.uuid.hex}", job.account.name
        if job.last_status == BackupJob.Status.FAILED:
            message = f"The last backup of {label} failed: {job.last_error}"
        elif job.target.status == BackupTarget.Status.FAILED:
            message = f"The repository {label} is backed up into failed its check."
        elif job.last_test_status == "failed":
            message = f"The latest test restore of {label} failed (see its backups page)."
        elif (now - since).total_seconds() > period:
            when = f"since {job.last_success_at:%Y-%m-%d %H:%M}" if job.last_success_at else "yet"
            message = f"No backup of {label} {when}."
        else:
            continue
        yield Finding(
            subject=subject, label=label, message=message[:500], server_id=job.account.server_id
        )


# ------------------------------------------------------------------ restores


# Puts a restored file or folder in place of (or at) the destination as root, never
# through a link the customer made (backups/place.py). Constant text, paths as args.
PLACE = (Path(__file__).with_name("place.py")).read_text()
LOAD_MARIADB = 'mysql --defaults-extra-file="$1" "$2" < "$3"'


def restore(
    ctx: OperationContext,
    job_id: int,
    run_id: int,
    kind: str,
    destination: str = "original",
    dry_run: bool = True,
    site: str = "",
    new_path: str = "",
    database_uuid: str = "",
    new_database_id: int | None = None,
    path: str = "",
) -> str:
    """Restore one site's files or one database from a run's snapshot (see
    services.do_restore); a dry run only says what would be restored."""
    job = (
        BackupJob.objects.select_related("account__server", "account__user", "target")
        .filter(pk=job_id)
        .first()
    )
    run = BackupRun.objects.filter(pk=run_id, job_id=job_id).first()
    if job is None or run is None or not run.restorable:
        raise OperationError("That snapshot no longer exists.")
    account, server = job.account, job.account.server
    t = _transport(server)
    snapshot = run.snapshot_id
    try:
        with Repository(job.target, t, server, f"job-{job.uuid.hex}") as repo:
            if kind == "files":
                return _restore_files(ctx, repo, run, account, site, destination, new_path, dry_run)
            if kind == "account":
                return _restore_account(ctx, repo, job, run, destination, new_path, dry_run)
            if kind == "path":
                return _restore_path(ctx, repo, job, run, path, destination, new_path, dry_run)
            return _restore_database(
                ctx, repo, run, database_uuid, destination, new_database_id, dry_run
            )
    except ResticError as exc:
        raise OperationError(f"Restore from {snapshot[:8]} failed: {exc}") from exc


def _stage(repo: Repository) -> str:
    import secrets

    stage = f"{repo.dir}/restore-{secrets.token_hex(4)}"
    repo.t.run(["mkdir", "-m", "700", "--", stage]).check()
    return stage


def _restore_files(ctx, repo, run, account, site, destination, new_path, dry_run) -> str:

    home = _home(account)
    entry = next((s for s in run.manifest.get("sites", []) if s.get("domain") == site), None)
    if entry is None or entry.get("dir") != f"{home}/sites/{site}":
        raise OperationError(f"{site} is not in this snapshot at its current place.")
    source = entry["dir"]
    dest = source if destination == "original" else f"{home}/{new_path}"
    files, size = repo.ls(run.snapshot_id, source)
    what = f"{files} files ({size / 2**20:.1f} MiB) of {site} to {dest}"
    if dry_run:
        ctx.log(f"Would restore {what}, replacing what is there now.")
        return f"Dry run: would restore {what}"
    if destination == "new" and repo.t.run(["test", "!", "-e", dest]).code != 0:
        raise OperationError(f"{dest} exists already: choose a new path.")
    stage = _stage(repo)
    try:
        ctx.progress(20, f"Restoring {site} from {run.snapshot_id[:8]}")
        repo.restore(run.snapshot_id, stage, source)
        ctx.progress(80, f"Putting the files in place at {dest}")
        _swap(repo, f"{stage}{source}", dest, home, account.name)
    finally:
        repo.t.run(["rm", "-rf", "--", stage])
    return f"Restored {what}"


# The whole account restored to a new place: the snapshot's home, dumps and configuration
# files side by side below the destination, the dumps and configuration readable by the
# account's user (the home keeps the owners and modes it had). Constant text, args only.
ARRANGE = r"""
set -eu
stage=$1 out=$2 home=$3 dumps=$4 user=$5
mkdir -m 700 -- "$out"
mv -- "$stage$home" "$out/home"
if [ -e "$stage$dumps" ]; then mv -- "$stage$dumps" "$out/dumps"; else mkdir -- "$out/dumps"; fi
mkdir -- "$out/configs"
for p in "$stage"/*; do
  case "$p" in "$out") ;; *) mv -- "$p" "$out/configs/" ;; esac
done
find "$out/configs" -mindepth 1 -depth -type d -empty -delete
chown -R -- "$user:$user" "$out/dumps" "$out/configs"
chown -- "$user:$user" "$out"
chmod 750 -- "$out"
"""


def _under(files: dict[str, int], prefix: str) -> tuple[int, int]:
    inside = [
        size for path, size in files.items() if path == prefix or path.startswith(prefix + "/")
    ]
    return len(inside), sum(inside)


def _restore_account(ctx, repo, job, run, destination, new_path, dry_run) -> str:
    """Everything of the account in one snapshot: each site's files, each database and the
    sites' configuration. In place: every site directory swapped for the snapshot's,
    every database that still exists made exactly as at the snapshot, and the sites'
    configuration rendered and applied again by the websites app. To a new place below
    the home: the home, the dumps and the configuration files as files."""
    from websites.databases.models import CustomerDatabase

    account = job.account
    home = _home(account)
    manifest = run.manifest or {}
    if manifest.get("home") != home:
        raise OperationError("The account's home moved since this snapshot.")
    sites = [
        s for s in manifest.get("sites", []) if s.get("dir") == f"{home}/sites/{s.get('domain')}"
    ]
    entries = manifest.get("databases", [])
    configs = manifest.get("configs", [])
    dumps = entries[0]["dump"].rsplit("/", 1)[0] if entries else ""
    files = _snapshot_files(repo, run.snapshot_id)  # one listing for the whole summary
    existing = {
        db.uuid.hex: db
        for db in CustomerDatabase.objects.filter(
            uuid__in=[e["uuid"] for e in entries], owner=account.user
        ).select_related("db_server")
    }
    dest = home if destination == "original" else f"{home}/{new_path}"
    lines = []
    n, size = _under(files, home)
    lines.append(f"home: {n} files ({size / 2**20:.1f} MiB)")
    for s in sites:
        n, size = _under(files, s["dir"])
        lines.append(f"site {s['domain']}: {n} files ({size / 2**20:.1f} MiB)")
    for e in entries:
        n, size = _under(files, e["dump"])
        if destination == "new":
            how = "as a dump file"
        elif e["uuid"] in existing:
            how = f"into {e['name']}, replacing its content"
        else:
            how = "skipped: the database was deleted since (restore it into a new one)"
        lines.append(f"database {e['name']} ({size / 2**20:.1f} MiB dump) {how}")
    if destination == "new":
        lines.append(f"configuration: {len(configs)} file(s)")
    else:
        lines.append("configuration: rendered from the panel's records and applied again")
    what = f"the account {account.name} from {run.snapshot_id[:8]} to {dest}"
    for line in lines:
        ctx.log(("Would restore " if dry_run else "Restoring ") + line)
    if dry_run:
        return f"Dry run: would restore {what}: " + "; ".join(lines)
    if destination == "new" and repo.t.run(["test", "!", "-e", dest]).code != 0:
        raise OperationError(f"{dest} exists already: choose a new path.")
    stage = _stage(repo)
    try:
        ctx.progress(10, f"Restoring {what}")
        includes = [home] if destination == "new" else [s["dir"] for s in sites]
        includes += [e["dump"] for e in entries]
        if destination == "new":
            includes += configs
        args = ["restore", run.snapshot_id, "--target", f"{stage}/tree"]
        for path in includes:
            args += ["--include", path]
        repo.run(*args, timeout=6 * 3600)
        tree = f"{stage}/tree"
        if destination == "new":
            ctx.progress(70, f"Putting everything at {dest}")
            out = f"{stage}/out"
            res = repo.t.run(["sh", "-c", ARRANGE, "arrange", tree, out, home, dumps, account.name])
            if res.code != 0:
                raise OperationError(f"Could not arrange the files: {res.stderr.strip()}")
            _swap(repo, out, dest, home, account.name)
            return f"Restored {what}: " + "; ".join(lines)
        for i, s in enumerate(sites):
            ctx.progress(30 + 30 * i // max(1, len(sites)), f"Putting {s['domain']} in place")
            _swap(repo, f"{tree}{s['dir']}", s["dir"], home, account.name)
        for i, e in enumerate(entries):
            target = existing.get(e["uuid"])
            if target is None:
                ctx.log(f"Not restored: {e['name']} was deleted since the snapshot.", "warning")
                continue
            if target.db_server.engine != e["engine"]:
                raise OperationError(f"The dump of {e['name']} is of another engine.")
            ctx.progress(60 + 25 * i // max(1, len(entries)), f"Loading {e['name']}")
            _load_dump(ctx, repo, f"{tree}{e['dump']}", target, in_place=True)
    finally:
        repo.t.run(["rm", "-rf", "--", stage])
    from servers.services import start_apply
    from websites.models import Website

    units = {w.unit for w in Website.objects.filter(server=account.server, owner=account.user)}
    if units:
        try:
            apply = start_apply(account.server, actor=None, units=units)
        except Exception as exc:  # the files and databases are back; say what is not
            ctx.log(f"Could not start applying the sites' configuration: {exc}", "warning")
        else:
            ctx.log(f"Applying the sites' configuration again: operation {apply.uuid}.")
    return f"Restored {what}: " + "; ".join(lines)


def _restore_path(ctx, repo, job, run, path, destination, new_path, dry_run) -> str:
    """One file or folder of the account's home, from the snapshot browser: restored as
    root (owners and modes as in the snapshot) into a staging directory, then swapped in
    at its place or put at a new path below the home."""
    from backups.models import validate_snapshot_path

    home = _home(job.account)
    validate_snapshot_path(path)
    if not path.startswith(home + "/") or run.manifest.get("home") != home:
        raise OperationError("Only files of the account's home are restored this way.")
    files = _snapshot_files_below(repo, run.snapshot_id, path)
    if files is None:
        raise OperationError(f"{path} is not in snapshot {run.snapshot_id[:8]}.")
    dest = path if destination == "original" else f"{home}/{new_path}"
    what = f"{path} ({files[0]} files, {files[1] / 2**20:.1f} MiB) to {dest}"
    if dry_run:
        ctx.log(f"Would restore {what}, replacing what is there now.")
        return f"Dry run: would restore {what}"
    if destination == "new" and repo.t.run(["test", "!", "-e", dest]).code != 0:
        raise OperationError(f"{dest} exists already: choose a new path.")
    stage = _stage(repo)
    try:
        ctx.progress(20, f"Restoring {path} from {run.snapshot_id[:8]}")
        repo.restore(run.snapshot_id, stage, path)
        ctx.progress(80, f"Putting it in place at {dest}")
        _swap(repo, f"{stage}{path}", dest, home, job.account.name)
    finally:
        repo.t.run(["rm", "-rf", "--", stage])
    return f"Restored {what}"


def _snapshot_files_below(repo: Repository, snapshot: str, path: str) -> tuple[int, int] | None:
    """(files, bytes) of ``path`` in the snapshot, a file or a folder; None when absent."""
    out = repo.run("ls", "--json", "--recursive", snapshot, path, timeout=3600)
    found, files, size = False, 0, 0
    for text in out.splitlines():
        try:
            node = json.loads(text)
        except ValueError:
            continue
        if node.get("struct_type") != "node":
            continue
        node_path = str(node.get("path") or "")
        if node_path == path or node_path.startswith(path + "/"):
            found = True
            if node.get("type") == "file":
                files += 1
                size += int(node.get("size") or 0)
    return (files, size) if found else None


# ------------------------------------------------------------------ snapshot browser


def browse(ctx: OperationContext, job_id: int, run_id: int, path: str) -> str:
    """List one folder of a snapshot (``restic ls --json``, not recursive: the folder's
    own entries) into a SnapshotListing row the browser page reads."""
    from backups.models import SnapshotListing, validate_snapshot_path

    validate_snapshot_path(path)
    job = BackupJob.objects.select_related("account__server", "target").filter(pk=job_id).first()
    run = BackupRun.objects.filter(pk=run_id, job_id=job_id).first()
    if job is None or run is None or not run.restorable:
        raise OperationError("That snapshot no longer exists.")
    server = job.account.server
    t = _transport(server)
    try:
        with Repository(job.target, t, server, f"job-{job.uuid.hex}") as repo:
            ctx.progress(20, f"Listing {path} in {run.snapshot_id[:8]}")
            out = repo.run("ls", "--json", run.snapshot_id, path, timeout=3600)
    except ResticError as exc:
        raise OperationError(f"Listing {path} failed: {exc}") from exc
    entries, truncated = [], False
    prefix = path.rstrip("/") + "/"
    for text in out.splitlines():
        try:
            node = json.loads(text)
        except ValueError:
            continue
        node_path = str(node.get("path") or "")
        if node.get("struct_type") != "node" or not node_path.startswith(prefix):
            continue
        if "/" in node_path[len(prefix) :]:
            continue  # deeper than the folder's own entries
        if len(entries) >= SnapshotListing.MAX_ENTRIES:
            truncated = True
            break
        entries.append(
            {
                "name": str(node.get("name") or ""),
                "type": str(node.get("type") or ""),
                "size": int(node.get("size") or 0),
                "permissions": str(node.get("permissions") or ""),
                "uid": int(node.get("uid") or 0),
                "gid": int(node.get("gid") or 0),
                "mtime": str(node.get("mtime") or "")[:19],
            }
        )
    entries.sort(key=lambda e: (e["type"] != "dir", e["name"]))
    SnapshotListing.objects.update_or_create(
        run=run,
        path=path,
        defaults={"entries": entries, "truncated": truncated, "listed_at": timezone.now()},
    )
    more = f" (the first {len(entries)})" if truncated else ""
    return f"Listed {len(entries)} entries of {path}{more}"


def _swap(repo: Repository, restored: str, dest: str, home: str, user: str) -> None:
    import secrets

    res = repo.t.run(["python3", "-c", PLACE, restored, dest, home, user, secrets.token_hex(4)])
    if res.code != 0:
        raise OperationError(f"Could not put the files in place at {dest}: {res.stderr.strip()}")


def _load_dump(ctx, repo: Repository, dump: str, target, *, in_place: bool) -> None:
    """Load a restored dump into ``target`` (a CustomerDatabase). In place, the database is
    made again first (with its grants), so nothing made after the snapshot survives."""
    from websites.databases.adapters import DatabaseAdapterError, adapter_for
    from websites.databases.models import DatabaseGrant

    adapter = adapter_for(target.db_server)
    try:
        if in_place:
            ctx.log(f"Emptying {target.name}")
            adapter.drop_database(target.name)
        adapter.create_database(target.name)
        grants = DatabaseGrant.objects.filter(database=target, status="active")
        for grant in grants.select_related("user"):
            adapter.grant(target.name, grant.user.name, grant.privileges)
    except DatabaseAdapterError as exc:
        raise OperationError(str(exc)) from exc
    ctx.log(f"Loading the dump into {target.name}")
    credential = _credential_file(repo, target.db_server)
    db_server = target.db_server
    if db_server.engine == "mariadb":
        argv = ["sh", "-c", LOAD_MARIADB, "load", credential, target.name, dump]
    else:
        argv = [
            "env",
            f"PGPASSFILE={credential}",
            "pg_restore",
            "-w",
            "--exit-on-error",
            "-h",
            db_server.address,
            "-p",
            str(int(db_server.port)),
            "-U",
            db_server.admin_user,
            "-d",
            target.name,
            dump,
        ]
    res = repo.t.run(argv, timeout=6 * 3600)
    if res.code != 0:
        raise OperationError(
            f"Loading the dump into {target.name} failed: {res.stderr.strip()[-1000:]}"
        )


def _restore_database(ctx, repo, run, database_uuid, destination, new_database_id, dry_run):
    from websites.databases.models import CustomerDatabase

    entry = next(
        (d for d in run.manifest.get("databases", []) if d.get("uuid") == database_uuid), None
    )
    source = CustomerDatabase.objects.filter(uuid=database_uuid).select_related("db_server")
    source = source.first()
    if entry is None or source is None:
        raise OperationError("That database is not in this snapshot, or was deleted.")
    if destination == "original":
        target = source
    else:
        target = CustomerDatabase.objects.select_related("db_server").filter(pk=new_database_id)
        target = target.first()
        if target is None:
            raise OperationError("The new database was deleted.")
    if target.db_server.engine != entry["engine"]:
        raise OperationError("The dump is of another engine.")
    files, size = repo.ls(run.snapshot_id, entry["dump"].rsplit("/", 1)[0])
    how = "replacing its content" if target.pk == source.pk else "as a new database"
    what = f"{entry['name']} ({size / 2**20:.1f} MiB dump) into {target.name}, {how}"
    if dry_run:
        ctx.log(f"Would restore {what}.")
        return f"Dry run: would restore {what}"
    stage = _stage(repo)
    try:
        ctx.progress(15, f"Fetching the dump of {entry['name']}")
        repo.restore(run.snapshot_id, stage, entry["dump"])
        _load_dump(ctx, repo, f"{stage}{entry['dump']}", target, in_place=target.pk == source.pk)
    finally:
        repo.t.run(["rm", "-rf", "--", stage])
    return f"Restored {what}"


# ------------------------------------------------------------------ test restores

# Scratch databases: a fixed prefix no customer's account name can take in practice, and
# a random suffix; checked against the databases app's name rule before any SQL.
SCRATCH_DB = "uhpscratch_{}"
# Every regular file below the scratch directory: size and path relative to it.
LIST_FILES = 'cd -- "$1" && find . -type f -printf "%s\\t%P\\n"'
TEST_SAMPLE = 5


def test_restore(ctx: OperationContext, job_id: int) -> str:
    """Restore the job's latest snapshot into a scratch directory and check it: restic
    ``restore --verify`` reads every restored file back and compares it with the
    snapshot's content hashes, the restored files must match ``restic ls`` (paths and
    sizes), and each dump must load into a scratch database. The scratch directory and
    databases are removed whatever happens; the result is a TestRestore row."""
    from backups.models import TestRestore

    job = (
        BackupJob.objects.select_related("account__server", "account__user", "target")
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        raise OperationError("The backup job was deleted.")
    run = (
        BackupRun.objects.filter(job=job, state=BackupRun.State.SUCCEEDED, forgotten=False)
        .exclude(snapshot_id="")
        .first()
    )
    test = TestRestore.objects.create(job=job, run=run, operation=ctx.op)
    try:
        if run is None:
            raise OperationError("There is no snapshot to test.")
        files, size, loaded = _test_restore(ctx, job, run)
    except Exception as exc:
        message = str(exc) or exc.__class__.__name__
        now = timezone.now()
        TestRestore.objects.filter(pk=test.pk).update(
            state=TestRestore.State.FAILED, error=message[:4000], finished_at=now
        )
        BackupJob.objects.filter(pk=job.pk).update(
            last_test_status=TestRestore.State.FAILED, last_test_at=now
        )
        if isinstance(exc, ResticError):
            raise OperationError(message) from exc
        raise
    now = timezone.now()
    TestRestore.objects.filter(pk=test.pk).update(
        state=TestRestore.State.PASSED,
        finished_at=now,
        files_checked=files,
        bytes_checked=size,
        databases_loaded=loaded,
    )
    BackupJob.objects.filter(pk=job.pk).update(
        last_test_status=TestRestore.State.PASSED, last_test_at=now
    )
    return (
        f"Snapshot {run.snapshot_id[:8]} restores: {files} files ({size / 2**20:.1f} MiB) "
        f"verified, {loaded} dump(s) loaded"
    )


def _snapshot_files(repo: Repository, snapshot: str) -> dict[str, int]:
    """Every regular file of a snapshot: absolute path → size (``restic ls --json``)."""
    out = repo.run("ls", "--json", snapshot, timeout=3600)
    files = {}
    for text in out.splitlines():
        try:
            node = json.loads(text)
        except ValueError:
            continue
        if node.get("struct_type") == "node" and node.get("type") == "file":
            files[str(node.get("path"))] = int(node.get("size") or 0)
    return files


def _test_restore(ctx: OperationContext, job: BackupJob, run: BackupRun) -> tuple[int, int, int]:
    import secrets

    server = job.account.server
    t = _transport(server)
    with Repository(job.target, t, server, f"job-{job.uuid.hex}") as repo:
        scratch = f"{repo.dir}/testrestore-{secrets.token_hex(6)}"
        t.run(["mkdir", "-m", "700", "--", scratch]).check()
        try:
            ctx.progress(5, f"Listing snapshot {run.snapshot_id[:8]}")
            expected = _snapshot_files(repo, run.snapshot_id)
            ctx.progress(15, f"Restoring {len(expected)} files into a scratch directory")
            repo.run("restore", run.snapshot_id, "--target", scratch, "--verify", timeout=6 * 3600)
            res = t.run(["sh", "-c", LIST_FILES, "list", scratch], timeout=3600).check()
            restored = {}
            for line in res.stdout.splitlines():
                size, _, path = line.partition("\t")
                restored["/" + path] = int(size)
            missing = sorted(set(expected) - set(restored))
            differ = sorted(p for p in expected if p in restored and restored[p] != expected[p])
            if missing or differ:
                raise OperationError(
                    f"The restored files differ from the snapshot: {len(missing)} missing, "
                    f"{len(differ)} of another size (e.g. {(missing + differ)[0]})"
                )
            ctx.progress(60, "Files verified; loading the dumps")
            loaded = 0
            for entry in run.manifest.get("databases", []):
                _load_scratch(ctx, repo, entry, f"{scratch}{entry['dump']}")
                loaded += 1
        finally:
            t.run(["rm", "-rf", "--", scratch])
    return len(expected), sum(expected.values()), loaded


def _load_scratch(ctx: OperationContext, repo: Repository, entry: dict, dump: str) -> None:
    """Load one dump into a new scratch database on its database server, then drop it."""
    import secrets

    from websites.databases.adapters import DatabaseAdapterError, adapter_for
    from websites.databases.models import DatabaseServer
    from websites.databases.naming import validate_full_name

    db_server = DatabaseServer.objects.filter(name=entry.get("db_server")).first()
    if db_server is None or db_server.engine != entry.get("engine"):
        raise OperationError(f"The database server of {entry.get('name')} is gone.")
    name = SCRATCH_DB.format(secrets.token_hex(8))
    validate_full_name(name)
    adapter = adapter_for(db_server)
    ctx.log(f"Loading the dump of {entry.get('name')} into the scratch database {name}")
    try:
        if adapter.database_exists(name):  # never load into (then drop) someone's database
            raise OperationError(f"The scratch database {name} exists already.")
        adapter.create_database(name)
        credential = _credential_file(repo, db_server)
        if db_server.engine == "mariadb":
            argv = ["sh", "-c", LOAD_MARIADB, "load", credential, name, dump]
        else:
            argv = [
                "env",
                f"PGPASSFILE={credential}",
                "pg_restore",
                "-w",
                "--exit-on-error",
                # Owners and grants belong to the real database, not the scratch one.
                "--no-owner",
                "--no-privileges",
                "-h",
                db_server.address,
                "-p",
                str(int(db_server.port)),
                "-U",
                db_server.admin_user,
                "-d",
                name,
                dump,
            ]
        res = repo.t.run(argv, timeout=6 * 3600)
        if res.code != 0:
            raise OperationError(
                f"The dump of {entry.get('name')} does not load: {res.stderr.strip()[-1000:]}"
            )
    except DatabaseAdapterError as exc:
        raise OperationError(f"Scratch database on {db_server.name}: {exc}") from exc
    finally:
        try:
            adapter.drop_database(name)
        except DatabaseAdapterError:
            log.exception("could not drop the scratch database %s", name)


def test_restores(sample: int = TEST_SAMPLE) -> int:
    """Weekly: a test restore of a random sample of the enabled jobs whose latest
    snapshot is recent (within two of their periods)."""
    import random

    from backups import services

    now = timezone.now()
    jobs = [
        job
        for job in BackupJob.objects.filter(enabled=True, last_success_at__isnull=False)
        .select_related("account__user", "target")
        .order_by("pk")
        if (now - job.last_success_at).total_seconds() <= 2 * job.every_minutes * 60
    ]
    started = 0
    for job in random.sample(jobs, min(sample, len(jobs))):
        try:
            services.start_test_restore(job, actor=None)
            started += 1
        except Exception:  # one job must not stop the others
            log.exception("could not start the test restore of job %s", job.pk)
    return started
