"""The panel's own backup with real restic: manage.py backup_panel of a panel (SQLite
database and key files), then restore_panel onto a fresh machine (an empty var directory)
and the panel there reads its data back, encrypted secrets included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.integration.conftest import copy_database, need

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
WRITE = """
from accounts.models import User
from websites.databases.models import DatabaseServer
User.objects.create_user(email="kept@example.com", password="x")
DatabaseServer.objects.create(name="kept-db", engine="mariadb", host="127.0.0.1", port=3306,
    admin_user="root", admin_password="s3cret-kept")
"""
READ = """
from accounts.models import User
from websites.databases.models import DatabaseServer
print(User.objects.filter(email="kept@example.com").count(),
      DatabaseServer.objects.get(name="kept-db").admin_password)
"""


def manage(
    var: Path, *args: str, keys_from_env: bool = False, check: bool = True, db_url: str = ""
):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "PYTEST_XDIST_WORKER")
        and not k.startswith(("SECRET_KEY", "PANEL_ENCRYPTION_KEYS", "PANEL_AUDIT_KEYS"))
    }
    env.update(PANEL_VAR_DIR=str(var), PANEL_DEBUG="1")
    if db_url:
        env["DATABASE_URL"] = db_url
    if keys_from_env:  # so that settings make no key files of their own in ``var``
        env.update(
            SECRET_KEY="restore-process-" + "x" * 40,
            PANEL_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            PANEL_AUDIT_KEYS="restore-process-audit-key",
        )
    res = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_the_panel_backs_up_and_restores_onto_a_fresh_machine(tmp_path, migrated_sqlite):
    need("restic")
    old, new, repo = tmp_path / "old", tmp_path / "new", tmp_path / "repo"
    old.mkdir()
    new.mkdir()
    password = tmp_path / "password"
    password.write_text("panel-backup-password\n")
    copy_database(migrated_sqlite, old)
    manage(old, "shell", "-c", WRITE)
    assert manage(old, "shell", "-c", READ).stdout.splitlines()[-1].split() == ["1", "s3cret-kept"]

    out = manage(old, "backup_panel", "--repo", str(repo), "--password-file", str(password))
    assert "Snapshot" in out.stdout and "encryption_key" in out.stdout
    assert (repo / "config").exists()
    assert not (old / "panel-backup").exists()  # the staging copy is removed

    # A restore never replaces a database that holds data without --force.
    refused = manage(
        old, "restore_panel", "--repo", str(repo), "--password-file", str(password), check=False
    )
    assert refused.returncode != 0 and "--force" in refused.stderr

    # A fresh machine: nothing in its var directory; the keys come back with the data.
    manage(
        new,
        "restore_panel",
        "--repo",
        str(repo),
        "--password-file",
        str(password),
        "--files-to",
        str(new),
        keys_from_env=True,
    )
    assert (new / "panel.sqlite3").exists() and (new / "encryption_key").exists()
    assert oct((new / "encryption_key").stat().st_mode & 0o777) == "0o600"
    assert manage(new, "shell", "-c", READ).stdout.splitlines()[-1].split() == ["1", "s3cret-kept"]
    assert manage(new, "migrate", "--check").returncode == 0


def test_a_wrong_password_is_refused(tmp_path, migrated_sqlite):
    need("restic")
    var, repo = tmp_path / "var", tmp_path / "repo"
    var.mkdir()
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("right\n")
    bad.write_text("wrong\n")
    copy_database(migrated_sqlite, var)
    manage(var, "backup_panel", "--repo", str(repo), "--password-file", str(good))
    res = manage(
        var, "restore_panel", "--repo", str(repo), "--password-file", str(bad), check=False
    )
    assert res.returncode != 0 and "restic failed" in res.stderr


def _pg(sql: str) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        conn.autocommit = True
        conn.execute(sql)


def test_a_postgresql_panel_restores_into_a_fresh_database(tmp_path):
    from tests.integration.test_databases import _listening

    need("restic")
    need("pg_dump")
    if not _listening("127.0.0.1", 5432):
        pytest.skip("PostgreSQL does not listen on 127.0.0.1:5432")
    names = ["panel_backups2_self_old", "panel_backups2_self_new"]
    urls = [f"postgres://postgres@127.0.0.1:5432/{n}" for n in names]
    old, new, repo = tmp_path / "old", tmp_path / "new", tmp_path / "repo"
    old.mkdir()
    new.mkdir()
    password = tmp_path / "password"
    password.write_text("pw\n")
    for name in names:
        _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _pg(f"CREATE DATABASE {name}")
    try:
        manage(old, "migrate", "-v0", db_url=urls[0])
        manage(old, "shell", "-c", WRITE, db_url=urls[0])
        manage(
            old,
            "backup_panel",
            "--repo",
            str(repo),
            "--password-file",
            str(password),
            db_url=urls[0],
        )
        manage(
            new,
            "restore_panel",
            "--repo",
            str(repo),
            "--password-file",
            str(password),
            "--files-to",
            str(new),
            keys_from_env=True,
            db_url=urls[1],
        )
        out = manage(new, "shell", "-c", READ, db_url=urls[1]).stdout.splitlines()[-1]
        assert out.split() == ["1", "s3cret-kept"]
    finally:
        for name in names:
            _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


TARGET = """
from accounts.models import User
from backups.models import BackupTarget
from servers.models import Server
here = Server.objects.create(name="here", address="127.0.0.1", transport="local",
    owner=User.objects.get(email="kept@example.com"), profile={{"state_dir": "{state}"}})
BackupTarget.objects.create(name="offsite", kind="s3", server=here, path="/panel",
    s3_endpoint="{endpoint}", s3_bucket="panel-self", s3_access_key="{access}",
    s3_secret_key="{secret}", password="target-password-123", status="ready")
"""


def test_the_panel_backs_up_into_a_stored_s3_target_and_restores_from_it(tmp_path, migrated_sqlite):
    """backup_panel --target into an S3 target (a local S3 server), initialised as target
    creation would; restore_panel --target-file onto a fresh machine, and --target from
    the database the old panel still has."""
    import subprocess as sp

    from tests.integration.s3_server import start_s3

    need("restic")
    s3 = start_s3()
    endpoint = s3.endpoint
    try:
        old, new = tmp_path / "old", tmp_path / "new"
        old.mkdir()
        new.mkdir()
        copy_database(migrated_sqlite, old)
        manage(old, "shell", "-c", WRITE)
        script = TARGET.format(
            state=tmp_path / "state", endpoint=endpoint, access=s3.access_key, secret=s3.secret_key
        )
        manage(old, "shell", "-c", script)
        creds = tmp_path / "creds"
        creds.write_text(
            f"[default]\naws_access_key_id = {s3.access_key}\n"
            f"aws_secret_access_key = {s3.secret_key}\n"
        )
        (tmp_path / "pw").write_text("target-password-123")
        sp.run(
            ["restic", "-r", f"s3:{endpoint}/panel-self/panel", "-p", str(tmp_path / "pw"), "init"],
            env={**os.environ, "AWS_SHARED_CREDENTIALS_FILE": str(creds)},
            check=True,
            capture_output=True,
        )
        access = tmp_path / "offsite.json"
        out = manage(old, "backup_panel", "--target", "offsite", "--export-target", str(access))
        assert "Snapshot" in out.stdout and "encryption_key" in out.stdout
        assert oct(access.stat().st_mode & 0o777) == "0o600"
        assert not list((old / "panel-backup-secrets").rglob("secrets-*"))  # removed
        # The bucket holds the snapshot (restic, with the target's own credentials).
        listed = sp.run(
            ["restic", "-r", f"s3:{endpoint}/panel-self/panel", "-p", str(tmp_path / "pw")]
            + ["snapshots", "--json", "--tag", "panel-self"],
            env={**os.environ, "AWS_SHARED_CREDENTIALS_FILE": str(creds)},
            capture_output=True,
            text=True,
        )
        assert listed.returncode == 0 and '"panel-self"' in listed.stdout, listed.stderr

        # A fresh machine: its database is empty, the target comes from the exported file.
        manage(
            new,
            "restore_panel",
            "--target-file",
            str(access),
            "--files-to",
            str(new),
            keys_from_env=True,
        )
        read = manage(new, "shell", "-c", READ).stdout.splitlines()[-1].split()
        assert read == ["1", "s3cret-kept"]
        # The old panel, its database still there: --target, which needs --force.
        refused = manage(old, "restore_panel", "--target", "offsite", check=False)
        assert refused.returncode != 0 and "--force" in refused.stderr
        # A directory target on another server cannot be reached from the panel's host.
        bad = manage(old, "backup_panel", "--target", "nosuch", check=False)
        assert bad.returncode != 0 and "No backup target" in bad.stderr
    finally:
        s3.stop()
