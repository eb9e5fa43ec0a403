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

from tests.integration.conftest import need

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


def test_the_panel_backs_up_and_restores_onto_a_fresh_machine(tmp_path):
    need("restic")
    old, new, repo = tmp_path / "old", tmp_path / "new", tmp_path / "repo"
    old.mkdir()
    new.mkdir()
    password = tmp_path / "password"
    password.write_text("panel-backup-password\n")
    manage(old, "migrate", "-v0")
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


def test_a_wrong_password_is_refused(tmp_path):
    need("restic")
    var, repo = tmp_path / "var", tmp_path / "repo"
    var.mkdir()
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("right\n")
    bad.write_text("wrong\n")
    manage(var, "migrate", "-v0")
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
