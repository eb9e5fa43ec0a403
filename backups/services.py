"""State changes of backups: targets (administrators), jobs, runs started now, restores.
Each validates, writes and audits in one transaction and starts its Operation on commit;
the work itself is in tasks.py."""

from __future__ import annotations

import re
import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from backups.models import BackupJob, BackupRun, BackupTarget
from core import audit
from core.models import Operation
from core.operations import start_operation
from core.policy import ADD, ADMIN, CHANGE, may, role_of
from core.services import accept_only, refuse_nul_in

TARGET_FIELDS = [
    "name",
    "kind",
    "server",
    "path",
    "sftp_host",
    "sftp_port",
    "sftp_user",
    "sftp_host_key",
    "s3_endpoint",
    "s3_bucket",
]
TARGET_SECRETS = ["password", "sftp_private_key", "s3_access_key", "s3_secret_key"]
JOB_FIELDS = ["account", "target", "enabled", "every_minutes", "keep_daily", "keep_weekly"]
RESTORE_FIELDS = [
    "run",
    "kind",
    "site",
    "database",
    "path",
    "destination",
    "new_path",
    "new_database",
]
TASKS = "backups.tasks"
# A path below the account's home for a restore elsewhere: plain segments, no "..".
RELATIVE_PATH = re.compile(r"(?!\.)[A-Za-z0-9._-]{1,100}(?:/(?!\.)[A-Za-z0-9._-]{1,100}){0,9}")


def _staff_only(actor) -> None:
    if actor is not None and role_of(actor) != ADMIN:
        raise PermissionDenied("Only administrators manage backup targets.")


# ------------------------------------------------------------------ targets


def do_create_target(*, actor, data: dict) -> BackupTarget:
    """A target; its repository is initialised (``restic init``) by an Operation. A blank
    password gets a generated one; an SFTP target without a key gets a new key pair (its
    public half is shown to install on the SFTP host)."""
    from servers.transport import generate_keypair

    _staff_only(actor)
    accept_only(data, TARGET_FIELDS + TARGET_SECRETS)
    target = BackupTarget(**data)
    if not target.password:
        target.password = secrets.token_urlsafe(32)
    if target.kind == BackupTarget.Kind.SFTP and not target.sftp_private_key:
        target.sftp_private_key, _public = generate_keypair(f"panel-backup-{target.name}")
    refuse_nul_in(target, TARGET_FIELDS + TARGET_SECRETS)
    target.full_clean()
    with transaction.atomic():
        target.save()
        audit.record(
            "backup_target.create",
            target,
            actor=actor,
            changes=audit.diff({}, audit.snapshot(target, TARGET_FIELDS)),
        )
        _start_check(target, actor)
    return target


def do_update_target(target: BackupTarget, *, actor, data: dict) -> BackupTarget:
    _staff_only(actor)
    accept_only(data, TARGET_FIELDS + TARGET_SECRETS)
    stored = BackupTarget.objects.get(pk=target.pk)
    before = audit.snapshot(stored, TARGET_FIELDS)
    changed_secrets = []
    for name, value in data.items():
        if name in TARGET_SECRETS:
            if value:
                if name == "password" and stored.status == BackupTarget.Status.READY:
                    raise ValidationError(
                        {"password": "The repository exists: use Change password."}
                    )
                setattr(target, name, value)
                changed_secrets.append(name)
            continue
        setattr(target, name, value)
    if target.kind != stored.kind and stored.jobs.exists():
        raise ValidationError({"kind": "Jobs use this target: its kind cannot change."})
    refuse_nul_in(target, TARGET_FIELDS + TARGET_SECRETS)
    target.full_clean()
    with transaction.atomic():
        target.save()
        changes = audit.diff(before, audit.snapshot(target, TARGET_FIELDS))
        for name in changed_secrets:
            changes[name] = ["(hidden)", "(changed)"]
        if changes:
            audit.record("backup_target.update", target, actor=actor, changes=changes)
    return target


def do_delete_target(target: BackupTarget, *, actor) -> None:
    """The row only: the repository and its snapshots stay where they are."""
    _staff_only(actor)
    if target.jobs.exists():
        raise ValidationError(f"Backup jobs use {target}. Delete them first.")
    with transaction.atomic():
        audit.record("backup_target.delete", target, actor=actor)
        target.delete()


def _start_check(target: BackupTarget, actor) -> Operation:
    return start_operation(
        kind="backup_target.check",
        task=f"{TASKS}.check_target",
        owner=actor or target.server.owner,
        requested_by=actor,
        target=target,
        target_action=CHANGE,
        lock_key=target.lock_key,
        args={"target_id": target.pk},
    )


def start_check_target(target: BackupTarget, *, actor) -> Operation:
    """Initialise the repository if it is new, else open it; measure free space."""
    _staff_only(actor)
    return _start_check(target, actor)


def do_change_password(target: BackupTarget, *, actor, data: dict) -> Operation:
    """A new repository password (blank: generated), kept encrypted as the target's
    pending password until the ``backup_target.password`` Operation has added it to the
    repository and opened it with it; only then does it replace the password."""
    _staff_only(actor)
    accept_only(data, ["password"])
    new = data.get("password") or secrets.token_urlsafe(32)
    if not isinstance(new, str) or not 8 <= len(new) <= 1024 or "\x00" in new:
        raise ValidationError({"password": "8 to 1024 characters."})
    if new.strip() != new or "\n" in new:
        # restic reads the password file's first line, trimmed.
        raise ValidationError({"password": "One line, without leading or trailing spaces."})
    if target.status != BackupTarget.Status.READY:
        raise ValidationError({"password": "The repository is not ready: check it first."})
    with transaction.atomic():
        BackupTarget.objects.filter(pk=target.pk).update(pending_password=new)
        audit.record(
            "backup_target.password",
            target,
            actor=actor,
            changes={"password": ["(hidden)", "(changing)"]},
        )
        return start_operation(
            kind="backup_target.password",
            task=f"{TASKS}.change_password",
            owner=actor or target.server.owner,
            requested_by=actor,
            target=target,
            target_action=CHANGE,
            lock_key=target.lock_key,
            args={"target_id": target.pk},
        )


def start_verify_target(target: BackupTarget, *, actor) -> Operation:
    """``restic check`` of the repository (weekly by the schedule, or on request)."""
    _staff_only(actor)
    return start_operation(
        kind="backup_target.verify",
        task=f"{TASKS}.verify_target",
        owner=actor or target.server.owner,
        requested_by=actor,
        target=target,
        target_action=CHANGE,
        lock_key=target.lock_key,
        args={"target_id": target.pk},
    )


# ------------------------------------------------------------------ jobs


def _check_job(job: BackupJob) -> None:
    target, account = job.target, job.account
    if target.kind == BackupTarget.Kind.LOCAL and target.server_id != account.server_id:
        raise ValidationError(
            {"target": "A directory target only takes accounts of its own server."}
        )


def do_create_job(*, actor, data: dict) -> BackupJob:
    if actor is not None and not may(actor, ADD, BackupJob):
        raise PermissionDenied("Only administrators set up backups.")
    accept_only(data, JOB_FIELDS)
    job = BackupJob(**data)
    job.full_clean()
    _check_job(job)
    with transaction.atomic():
        job.save()
        audit.record(
            "backup_job.create",
            job,
            actor=actor,
            changes=audit.diff({}, audit.snapshot(job, JOB_FIELDS)),
        )
    return job


def do_update_job(job: BackupJob, *, actor, data: dict) -> BackupJob:
    if actor is not None and role_of(actor) != ADMIN:
        raise PermissionDenied("Only administrators change backup jobs.")
    accept_only(data, JOB_FIELDS)
    stored = BackupJob.objects.get(pk=job.pk)
    before = audit.snapshot(stored, JOB_FIELDS)
    for name, value in data.items():
        setattr(job, name, value)
    if job.account_id != stored.account_id:
        raise ValidationError({"account": "A job keeps its account."})
    job.full_clean()
    _check_job(job)
    with transaction.atomic():
        job.save()
        changes = audit.diff(before, audit.snapshot(job, JOB_FIELDS))
        if changes:
            audit.record("backup_job.update", job, actor=actor, changes=changes)
    return job


def do_delete_job(job: BackupJob, *, actor) -> None:
    """The job and its run records; its snapshots stay in the repository."""
    if actor is not None and role_of(actor) != ADMIN:
        raise PermissionDenied("Only administrators delete backup jobs.")
    with transaction.atomic():
        audit.record("backup_job.delete", job, actor=actor)
        job.delete()


def busy(job: BackupJob) -> bool:
    return Operation.objects.filter(
        target_id=str(job.uuid), kind="backup.run", state__in=["queued", "running"]
    ).exists()


def start_backup(job: BackupJob, *, actor) -> Operation:
    """Back the account up now (also what the schedule calls, with no actor)."""
    if busy(job):
        raise ValidationError("A backup of this account is already queued or running.")
    with transaction.atomic():
        BackupJob.objects.filter(pk=job.pk).update(last_run_at=timezone.now())
        return start_operation(
            kind="backup.run",
            task=f"{TASKS}.run_backup",
            owner=job.account.user,
            requested_by=actor,
            target=job,
            target_action=CHANGE,
            lock_key=job.target.lock_key,
            args={"job_id": job.pk},
        )


def start_test_restore(job: BackupJob, *, actor) -> Operation:
    """Test-restore the job's latest snapshot now (the weekly schedule calls it with no
    actor): nothing of the customer's is changed, scratch copies are removed after."""
    if actor is not None and role_of(actor) != ADMIN:
        raise PermissionDenied("Only administrators start test restores.")
    return start_operation(
        kind="backup.test_restore",
        task=f"{TASKS}.test_restore",
        owner=job.account.user,
        requested_by=actor,
        target=job,
        target_action=CHANGE,
        lock_key=job.target.lock_key,
        args={"job_id": job.pk},
    )


# ------------------------------------------------------------------ restores


def _home_path(job: BackupJob, run: BackupRun, path) -> str:
    """A file or folder of the account's home in the snapshot (checked again, against the
    snapshot's listing, by the Operation)."""
    from backups.models import validate_snapshot_path

    home = (run.manifest or {}).get("home") or ""
    try:
        validate_snapshot_path(path if isinstance(path, str) else "")
    except ValidationError as exc:
        raise ValidationError({"path": exc.messages}) from exc
    if not home or not path.rstrip("/").startswith(home + "/"):
        raise ValidationError({"path": "A file or folder below the account's home."})
    return path.rstrip("/")


def start_browse(job: BackupJob, *, actor, run: BackupRun, path: str = "") -> Operation:
    """List one folder of a snapshot (the home when ``path`` is blank) into a
    SnapshotListing, as an Operation: pages never open a connection. Audited (who looked
    at which folder of the customer's files)."""
    if actor is not None and not may(actor, CHANGE, job):
        raise PermissionDenied("You may not browse this account's snapshots.")
    if not isinstance(run, BackupRun) or run.job_id != job.pk or not run.restorable:
        raise ValidationError({"run": "Choose a snapshot of this account that still exists."})
    home = (run.manifest or {}).get("home") or ""
    path = _home_path(job, run, path) if path and path != home else home
    if not path:
        raise ValidationError({"run": "This snapshot has no manifest to browse."})
    with transaction.atomic():
        audit.record(
            "backup.browse",
            job,
            actor=actor,
            changes={"browse": [None, {"run": run.uuid.hex, "path": path}]},
        )
        return start_operation(
            kind="backup.browse",
            task=f"{TASKS}.browse",
            owner=job.account.user,
            requested_by=actor,
            target=job,
            target_action=CHANGE,
            lock_key=job.target.lock_key,
            args={"job_id": job.pk, "run_id": run.pk, "path": path},
        )


def _new_path(data: dict) -> str:
    new_path = data.get("new_path") or ""
    if not RELATIVE_PATH.fullmatch(new_path) or "/../" in f"/{new_path}/":
        raise ValidationError(
            {"new_path": "A path below the account's home: letters, digits, . _ - and /."}
        )
    return new_path


def do_restore(job: BackupJob, *, actor, data: dict, dry_run: bool = True) -> Operation:
    """Restore from one snapshot of ``job``: the whole account (``kind`` "account": every
    site's files, every database, the sites' configuration) in place or as files below
    ``new_path``; one site's files (``kind`` "files") to their
    place or to ``new_path`` below the account's home, or one database (``kind``
    "database") into itself (left exactly as at the snapshot) or into a new database
    ``new_database`` (made through the databases app, within the owner's plan).
    ``dry_run`` only says what would be restored."""
    from websites.databases import services as db_services
    from websites.databases.models import CustomerDatabase

    if actor is not None and not may(actor, CHANGE, job):  # before a database is made
        raise PermissionDenied("You may not restore this account's backups.")
    accept_only(data, RESTORE_FIELDS)
    run = data.get("run")
    if not isinstance(run, BackupRun) or run.job_id != job.pk or not run.restorable:
        raise ValidationError({"run": "Choose a snapshot of this account that still exists."})
    kind = data.get("kind")
    destination = data.get("destination") or "original"
    if destination not in ("original", "new"):
        raise ValidationError({"destination": "Restore to the original place or a new one."})
    args: dict = {"job_id": job.pk, "run_id": run.pk, "dry_run": bool(dry_run)}
    manifest = run.manifest or {}
    if kind == "files":
        domain = data.get("site") or ""
        sites = {s["domain"]: s for s in manifest.get("sites", [])}
        if domain not in sites:
            raise ValidationError({"site": "That site is not in this snapshot."})
        args.update(kind="files", site=domain)
        if destination == "new":
            args["new_path"] = _new_path(data)
    elif kind == "account":
        args["kind"] = "account"
        if destination == "new":
            args["new_path"] = _new_path(data)
    elif kind == "path":
        args.update(kind="path", path=_home_path(job, run, data.get("path")))
        if destination == "new":
            args["new_path"] = _new_path(data)
    elif kind == "database":
        database = data.get("database")
        dumps = {d["uuid"]: d for d in manifest.get("databases", [])}
        if not isinstance(database, CustomerDatabase) or database.uuid.hex not in dumps:
            raise ValidationError({"database": "That database is not in this snapshot."})
        args.update(kind="database", database_uuid=database.uuid.hex)
        if destination == "new":
            suffix = data.get("new_database") or ""
            if dry_run:
                from websites.databases import naming

                naming.full_name(
                    job.account.user.account_name,
                    suffix,
                    engine=database.db_server.engine,
                    kind="database",
                )
            else:
                new, _pw = db_services.do_create_database(
                    actor=actor,
                    data={
                        "db_server": database.db_server,
                        "name": suffix,
                        "owner": job.account.user,
                    },
                )
                args["new_database_id"] = new.pk
    else:
        raise ValidationError({"kind": "Restore the account, a site's files or a database."})
    args["destination"] = destination
    with transaction.atomic():
        if not dry_run:
            audit.record(
                "backup.restore",
                job,
                actor=actor,
                changes={"restore": [None, {k: v for k, v in args.items() if k != "job_id"}]},
            )
        return start_operation(
            kind="backup.restore_check" if dry_run else "backup.restore",
            task=f"{TASKS}.restore",
            owner=job.account.user,
            requested_by=actor,
            target=job,
            target_action=CHANGE,
            lock_key=job.target.lock_key,
            args=args,
        )
