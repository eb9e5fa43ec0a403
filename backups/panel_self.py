"""The panel's own backup: its database (SQLite through Python's online backup API, the
same as ``sqlite3 .backup``; PostgreSQL with ``pg_dump -Fc``) and its key files, in a
restic repository reached from the panel's host: a repository and a password file, or a
stored BackupTarget (``manage.py backup_panel`` / ``restore_panel``). Everything runs
locally; passwords and keys reach restic and pg_* through files and environment
variables, never an argv."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.utils import timezone

TAG = "panel-self"
# The key files settings.py makes in PANEL_VAR_DIR when they are not given by the
# environment: without the encryption key the restored secrets are unreadable.
KEY_FILES = ("secret_key", "encryption_key", "audit_key", "audit-head.log")


class PanelBackupError(Exception):
    pass


def _db() -> dict:
    return settings.DATABASES["default"]


def _engine() -> str:
    engine = _db()["ENGINE"]
    if engine.endswith("sqlite3"):
        return "sqlite"
    if "postgresql" in engine:
        return "postgresql"
    raise PanelBackupError(f"Unsupported database engine {engine}.")


def _pg_env() -> dict:
    db = _db()
    env = {**os.environ, "PGHOST": str(db.get("HOST") or "127.0.0.1")}
    env["PGPORT"] = str(db.get("PORT") or 5432)
    env["PGUSER"] = str(db.get("USER") or "postgres")
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return env


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip()[-1500:]
        raise PanelBackupError(f"{argv[0]} failed (exit {res.returncode}): {tail}")
    return res


# restic's arguments → the whole argv (a repository and a password file, or a target's).
Restic = Callable[..., list[str]]
# What a target file (``backup_panel --export-target``) holds: the target's repository
# settings and secrets, to restore a panel onto a machine whose database is still empty.
TARGET_FILE_FIELDS = (
    "kind",
    "path",
    "sftp_host",
    "sftp_port",
    "sftp_user",
    "sftp_host_key",
    "sftp_private_key",
    "s3_endpoint",
    "s3_bucket",
    "s3_access_key",
    "s3_secret_key",
    "password",
)


def plain_repository(repo: str, password_file: str) -> Restic:
    def argv(*args: str) -> list[str]:
        return ["restic", "-r", repo, "--password-file", password_file, *args]

    return argv


def _restic(restic: Restic, *args: str) -> str:
    return _run(restic(*args)).stdout


def target_by_name(name: str):
    """A stored target this host can reach: SFTP, S3, or a directory on the panel's own
    host (a local-transport server)."""
    from backups.models import BackupTarget
    from servers.models import Server

    target = BackupTarget.objects.select_related("server").filter(name=name).first()
    if target is None:
        raise PanelBackupError(f"No backup target is named {name!r}.")
    if target.kind == BackupTarget.Kind.LOCAL and target.server.transport != Server.Transport.LOCAL:
        raise PanelBackupError(
            f"{name} is a directory on {target.server.name}, not on the panel's host: use an "
            "SFTP or S3 target, or a directory target of a local server."
        )
    return target


def target_from_file(path: str):
    """An unsaved target from a file written by ``backup_panel --export-target``,
    validated like a stored one."""
    from django.core.exceptions import ValidationError

    from backups.models import BackupTarget

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PanelBackupError(f"Cannot read the target file {path}: {exc}") from exc
    if not isinstance(data, dict) or set(data) - set(TARGET_FILE_FIELDS):
        raise PanelBackupError(f"{path} is not a target file.")
    target = BackupTarget(name="from-file", **data)
    try:
        target.clean_fields(exclude=["server", "name"])
        target.clean()
    except ValidationError as exc:
        raise PanelBackupError(f"{path}: {exc}") from exc
    return target


def export_target(target, path: str, *, force: bool = False) -> None:
    """Write the target's settings and secrets to ``path`` (0600 from the start, never
    through a link): keep it offline with the encryption keys, to restore onto a fresh
    machine. An existing file is refused unless ``force``, then replaced in one rename.
    Audited (the path, never the secrets)."""
    from core import audit

    data = json.dumps({name: getattr(target, name) for name in TARGET_FILE_FIELDS}, indent=1)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        if force:
            fd, tmp = tempfile.mkstemp(prefix=".panel-target-", dir=os.path.dirname(path) or ".")
        else:
            fd, tmp = os.open(path, flags, 0o600), ""
    except FileExistsError as exc:
        raise PanelBackupError(f"{path} exists already: give --force to replace it.") from exc
    except OSError as exc:
        raise PanelBackupError(f"Cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        if tmp:
            os.replace(tmp, path)  # replaces a link at ``path``, never writes through it
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise PanelBackupError(f"Cannot write {path}: {exc.strerror}") from exc
    audit.record("backup_target.export", target, changes={"file": [None, os.path.abspath(path)]})


@contextmanager
def target_repository(target) -> Iterator[Restic]:
    """restic argv for a target from the panel's host: its secret files (password, SFTP
    key, S3 credentials) in a 0700 directory of PANEL_VAR_DIR, removed afterwards. One
    panel backup or restore at a time (an exclusive lock): opening sweeps the directory
    for secrets an interrupted run left, which would be another run's in use."""
    import fcntl

    from backups.restic import Repository
    from servers.transport import LocalTransport

    base = Path(settings.VAR_DIR) / "panel-backup-secrets"
    base.mkdir(mode=0o700, exist_ok=True)
    lock = os.open(base / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise PanelBackupError(
                "Another panel backup or restore with a stored target is running: try again "
                "when it has finished."
            ) from exc
        repo = Repository(
            target, LocalTransport(), None, "panel", directory=str(base / "repository")
        )
        try:
            repo.open()
        except Exception as exc:
            raise PanelBackupError(f"Cannot set up the target's secrets: {exc}") from exc
        try:
            yield repo.command
        finally:
            repo.close()
    finally:
        os.close(lock)  # releases the lock


def backup(restic: Restic, *, include: list[str] = (), init_dir: str = "") -> dict:
    """Back the panel up (``init_dir``: a directory repository, initialised when new);
    returns restic's summary."""
    # A directory is initialised when new; any other repository (sftp:, s3:, rest:) must
    # have been initialised before (a target is, when it is created).
    if init_dir and not Path(init_dir, "config").exists():
        Path(init_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        _restic(restic, "init")
    # A fixed staging path: restic finds the parent snapshot and stores stable paths.
    stage = Path(settings.VAR_DIR) / "panel-backup"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(mode=0o700, parents=True)
    try:
        engine = _engine()
        if engine == "sqlite":
            src = sqlite3.connect(str(_db()["NAME"]))
            dst = sqlite3.connect(str(stage / "panel.sqlite3"))
            try:
                src.backup(dst)  # a consistent copy while the panel runs
            finally:
                dst.close()
                src.close()
        else:
            _run(
                ["pg_dump", "-w", "-Fc", "-f", str(stage / "panel.dump"), "--", _db()["NAME"]],
                env=_pg_env(),
            )
        files = []
        (stage / "files").mkdir(mode=0o700)
        for path in [Path(settings.VAR_DIR) / n for n in KEY_FILES] + [Path(p) for p in include]:
            if path.is_file():
                shutil.copy2(path, stage / "files" / path.name)
                files.append({"name": path.name, "path": str(path.resolve())})
        manifest = {
            "format": 1,
            "engine": engine,
            "database": str(_db()["NAME"]),
            "files": files,
            "created_at": timezone.now().isoformat(),
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=1))
        out = _restic(restic, "backup", "--json", "--tag", TAG, str(stage))
        summary = {}
        for line in out.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("message_type") == "summary":
                summary = msg
        return {"snapshot_id": summary.get("snapshot_id", ""), "manifest": manifest}
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def restore(restic: Restic, *, snapshot: str = "latest", files_to: str = "", force=False) -> dict:
    """Restore a panel backup into the configured database (which must be empty or new
    unless ``force``), and its key files into ``files_to`` (default: where they were)."""
    with tempfile.TemporaryDirectory(prefix="panel-restore-") as tmp:
        args = ["restore", snapshot, "--target", tmp]
        if snapshot == "latest":
            args[2:2] = ["--tag", TAG]
        _restic(restic, *args)
        [manifest_path] = list(Path(tmp).rglob("manifest.json")) or [None]
        if manifest_path is None:
            raise PanelBackupError("That snapshot is not a panel backup.")
        stage = manifest_path.parent
        manifest = json.loads(manifest_path.read_text())
        engine = _engine()
        if manifest["engine"] != engine:
            raise PanelBackupError(
                f"The backup is of {manifest['engine']}, the panel uses {engine}."
            )
        if engine == "sqlite":
            target = Path(str(_db()["NAME"]))
            if target.exists() and target.stat().st_size and not force:
                raise PanelBackupError(f"{target} exists: restore with --force to replace it.")
            target.parent.mkdir(parents=True, exist_ok=True)
            src = sqlite3.connect(str(stage / "panel.sqlite3"))
            dst = sqlite3.connect(str(target))
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
        else:
            argv = ["pg_restore", "-w", "--exit-on-error", "--no-owner", "-d", _db()["NAME"]]
            if force:
                argv[1:1] = ["--clean", "--if-exists"]
            _run([*argv, str(stage / "panel.dump")], env=_pg_env())
        restored = []
        for entry in manifest.get("files", []):
            dest = Path(files_to, entry["name"]) if files_to else Path(entry["path"])
            if dest.exists() and not force:
                raise PanelBackupError(f"{dest} exists: restore with --force to replace it.")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(stage / "files" / entry["name"], dest)
            os.chmod(dest, 0o600)
            restored.append(str(dest))
        return {"manifest": manifest, "files": restored}
