"""Backups with real restic: a customer's files (owned by a real Linux user), MariaDB and
PostgreSQL dumps and restores, a directory target and an SFTP target through a loopback
sshd, failures that alert, retention, and restores of files and databases."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from backups import services
from backups.models import BackupJob, BackupRun, BackupTarget
from core.models import Operation
from servers.connection import open_transport
from tests.conftest import make_user, require_real
from tests.integration.conftest import need
from tests.integration.test_databases import _listening
from tests.integration.web_stack import WebStack
from websites import sysaccounts
from websites.databases.adapters import Endpoint, adapter_for
from websites.databases.models import CustomerDatabase, DatabaseServer
from websites.models import SystemAccount, Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST = "127.0.0.41"
NAME = "uhpbak"
DOMAIN = "bak.example.com"
ENDPOINTS = {
    "mariadb": Endpoint("mariadb", "127.0.0.1", 3306, admin_user="root", admin_password=""),
    "postgresql": Endpoint(
        "postgresql", "127.0.0.1", 5432, admin_user="postgres", admin_password=""
    ),
}


@pytest.fixture(scope="module")
def stack():
    need("restic")
    web = WebStack(HOST, NAME)
    yield web
    web.stop()


@pytest.fixture
def repo_dir():
    path = Path(tempfile.mkdtemp(prefix="uhp-restic-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def world(stack, admin_user, q_sync, django_capture_on_commit_callbacks):
    """A server, the customer's system account (a real Linux user) with one site whose
    files have owners and modes of their own."""
    server = stack.server(admin_user)
    customer = make_user(f"{NAME}@example.com", "customer")
    assert customer.account_name == NAME
    account = SystemAccount.objects.create(
        server=server, user=customer, name=NAME, status=SystemAccount.Status.ACTIVE
    )
    t = open_transport(server)
    sysaccounts.ensure(t, server, NAME)
    sysaccounts.ensure_site(t, server, NAME, DOMAIN)
    Website.objects.create(domain=DOMAIN, server=server, owner=customer, status="active")
    site = stack.homes / NAME / "sites" / DOMAIN
    public = site / "public"
    for child in public.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    (public / "index.html").write_text("<h1>hello</h1>\n")
    (public / "secret.php").write_text("<?php // private\n")
    os.chmod(public / "secret.php", 0o640)
    (public / "uploads").mkdir()
    (public / "uploads" / "a.bin").write_bytes(os.urandom(50_000))
    os.chmod(public / "uploads", 0o750)
    for path in (
        public / "index.html",
        public / "secret.php",
        public / "uploads",
        public / "uploads" / "a.bin",
    ):
        shutil.chown(path, NAME, NAME)

    class World:
        pass

    w = World()
    w.server, w.customer, w.account, w.site, w.public = server, customer, account, site, public
    w.admin = admin_user
    w.run = django_capture_on_commit_callbacks
    return w


def tree(root: Path) -> dict:
    """Every path below root with its content digest (a link: where it points, never what
    it points at, which other tests may change: /etc/passwd), owner, group and mode."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                digest = "link:" + os.readlink(p)
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[str(p.relative_to(root))] = (digest, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return out


def local_target(w, repo_dir, **extra) -> BackupTarget:
    with w.run(execute=True):
        target = services.do_create_target(
            actor=w.admin,
            data={
                "name": "local",
                "kind": "local",
                "server": w.server,
                "path": str(repo_dir),
                **extra,
            },
        )
    target.refresh_from_db()
    return target


def make_job(w, target, **extra) -> BackupJob:
    return services.do_create_job(
        actor=w.admin, data={"account": w.account, "target": target, **extra}
    )


def back_up(w, job) -> Operation:
    with w.run(execute=True):
        op = services.start_backup(job, actor=w.admin)
    op.refresh_from_db()
    return op


def restore(w, job, data, dry_run=False) -> Operation:
    with w.run(execute=True):
        op = services.do_restore(job, actor=w.admin, data=data, dry_run=dry_run)
    op.refresh_from_db()
    return op


def test_a_local_target_is_initialised_with_free_space_shown(world, repo_dir):
    target = local_target(world, repo_dir)
    assert target.status == "ready", target.status_message
    assert target.free_bytes and target.free_bytes > 0
    assert (repo_dir / "config").exists()  # restic init ran
    # Checking again opens the existing repository with its password.
    with world.run(execute=True):
        op = services.start_check_target(target, actor=world.admin)
    op.refresh_from_db()
    assert op.state == "succeeded" and "opened" in op.message, op.error


def test_backup_records_the_run_and_restores_a_site_exactly(world, repo_dir):
    target = local_target(world, repo_dir)
    job = make_job(world, target)
    before = tree(world.site)
    from backups.tasks import _config_paths

    # The site's vhost where the websites app puts it (no apply ran in this test).
    [vhost] = [p for p in _config_paths(world.account) if p.endswith(f"{DOMAIN}.conf")]
    Path(vhost).write_text("server { }\n")
    op = back_up(world, job)
    assert op.state == "succeeded", op.error
    run = BackupRun.objects.get(job=job)
    assert run.state == "succeeded" and len(run.snapshot_id) >= 8
    assert run.files >= 4 and run.size_bytes >= 50_000 and run.bytes_added > 0
    assert run.duration_s > 0
    assert run.manifest["sites"][0]["domain"] == DOMAIN
    assert run.manifest["configs"] == [vhost]
    job.refresh_from_db()
    assert job.last_status == "ok" and job.last_success_at and job.last_size_bytes
    # Live progress came from restic's --json status lines.
    from core.models import OperationLogLine

    lines = OperationLogLine.objects.filter(operation=op).values_list("message", flat=True)
    assert [m for m in lines if m.startswith("Backing up: ")], list(lines)

    # Damage: a file deleted, one changed, a mode changed, a stray file added.
    (world.public / "index.html").unlink()
    (world.public / "secret.php").write_text("defaced")
    os.chmod(world.public / "uploads", 0o777)
    (world.public / "stray.txt").write_text("not in the backup")
    data = {"run": run, "kind": "files", "site": DOMAIN, "destination": "original"}
    check = restore(world, job, data, dry_run=True)
    assert check.state == "succeeded" and check.message.startswith("Dry run"), check.error
    assert not (world.public / "index.html").exists()  # a dry run changes nothing
    op = restore(world, job, data)
    assert op.state == "succeeded", op.error
    assert tree(world.site) == before  # content, owners and modes; the stray file is gone

    # Elsewhere below the home, with the same owners and modes.
    op = restore(world, job, {**data, "destination": "new", "new_path": "restored/site"})
    assert op.state == "succeeded", op.error
    assert tree(world.site.parent.parent / "restored" / "site") == before
    again = restore(world, job, {**data, "destination": "new", "new_path": "restored/site"})
    assert again.state == "failed" and "exists already" in again.error
    # A link the customer made to outside the home is not followed (restores run as root).
    outside = Path(tempfile.mkdtemp(prefix="uhp-outside-"))
    try:
        (world.public / "escape").symlink_to(outside)
        new_path = f"sites/{DOMAIN}/public/escape/site"
        op = restore(world, job, {**data, "destination": "new", "new_path": new_path})
        assert op.state == "failed" and "is a symbolic link" in op.error, op.error
        assert list(outside.iterdir()) == []
    finally:
        shutil.rmtree(outside)


def test_retention_forgets_old_snapshots(world, repo_dir):
    target = local_target(world, repo_dir)
    job = make_job(world, target, keep_daily=1, keep_weekly=0)
    assert back_up(world, job).state == "succeeded"
    (world.public / "index.html").write_text("changed")
    assert back_up(world, job).state == "succeeded"
    first, second = BackupRun.objects.filter(job=job).order_by("started_at")
    assert first.forgotten and not second.forgotten  # one daily kept
    assert second.bytes_added < second.size_bytes  # incremental


def _database(w, engine: str, suffix: str) -> CustomerDatabase:
    ep = ENDPOINTS[engine]
    if not _listening(ep.host, ep.port):
        require_real(f"{engine} does not listen on {ep.host}:{ep.port}")
    db_server = DatabaseServer.objects.create(
        name=f"{engine}-bak", engine=engine, host=ep.host, port=ep.port, admin_user=ep.admin_user
    )
    name = f"{NAME}_{suffix}"
    adapter_for(ep).drop_database(name)
    adapter_for(ep).create_database(name)
    return CustomerDatabase.objects.create(
        db_server=db_server, owner=w.customer, name=name, status="active"
    )


def _sql(engine: str, database: str, statements: list[str]) -> list:
    if engine == "mariadb":
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", user="root", database=database, autocommit=True)
    else:
        import psycopg

        conn = psycopg.connect(host="127.0.0.1", user="postgres", dbname=database, autocommit=True)
    try:
        rows = []
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
                rows = cur.fetchall() if cur.description else rows
        return [tuple(r) for r in rows]
    finally:
        conn.close()


def _state(engine: str, database: str) -> tuple:
    if engine == "mariadb":
        tables = _sql(engine, database, ["SHOW TABLES"])
    else:
        tables = _sql(
            engine,
            database,
            ["SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"],
        )
    content = {t[0]: _sql(engine, database, [f"SELECT * FROM {t[0]} ORDER BY 1"]) for t in tables}
    return sorted(t[0] for t in tables), content


@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
def test_a_database_restored_in_place_is_exactly_as_at_the_snapshot(world, repo_dir, engine):
    db = _database(world, engine, "shop")
    try:
        _sql(
            engine,
            db.name,
            [
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, item VARCHAR(40))",
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
                "INSERT INTO orders VALUES (1, 'apple'), (2, 'pear')",
                "INSERT INTO notes VALUES (1, 'keep')",
            ],
        )
        at_snapshot = _state(engine, db.name)
        target = local_target(world, repo_dir)
        job = make_job(world, target)
        op = back_up(world, job)
        assert op.state == "succeeded", op.error
        run = BackupRun.objects.get(job=job)
        [dumped] = run.manifest["databases"]
        assert dumped["name"] == db.name and dumped["engine"] == engine
        # Changes after the snapshot: a row changed and added, a table dropped and one made.
        _sql(
            engine,
            db.name,
            [
                "UPDATE orders SET item = 'plum' WHERE id = 1",
                "INSERT INTO orders VALUES (3, 'fig')",
                "DROP TABLE notes",
                "CREATE TABLE later (id INTEGER PRIMARY KEY)",
            ],
        )
        assert _state(engine, db.name) != at_snapshot
        data = {"run": run, "kind": "database", "database": db, "destination": "original"}
        op = restore(world, job, data)
        assert op.state == "succeeded", op.error
        assert _state(engine, db.name) == at_snapshot
    finally:
        adapter_for(ENDPOINTS[engine]).drop_database(db.name)


def test_a_database_restores_into_a_new_one(world, repo_dir):
    from websites.models import Plan, Subscription

    Subscription.objects.create(user=world.customer, plan=Plan.objects.create(name="bak"))
    engine = "mariadb"
    db = _database(world, engine, "blog")
    try:
        _sql(
            engine,
            db.name,
            ["CREATE TABLE posts (id INTEGER PRIMARY KEY)", "INSERT INTO posts VALUES (7)"],
        )
        job = make_job(world, local_target(world, repo_dir))
        assert back_up(world, job).state == "succeeded"
        run = BackupRun.objects.get(job=job)
        data = {
            "run": run,
            "kind": "database",
            "database": db,
            "destination": "new",
            "new_database": "blogcopy",
        }
        op = restore(world, job, data)
        assert op.state == "succeeded", op.error
        new = CustomerDatabase.objects.get(name=f"{NAME}_blogcopy")
        assert _state(engine, new.name) == _state(engine, db.name)
    finally:
        adapter_for(ENDPOINTS[engine]).drop_database(db.name)
        adapter_for(ENDPOINTS[engine]).drop_database(f"{NAME}_blogcopy")


def test_sftp_target_through_a_loopback_sshd(world, sshd, repo_dir):
    os.chmod(repo_dir, 0o755)
    with world.run(execute=True):
        target = services.do_create_target(
            actor=world.admin,
            data={
                "name": "offsite",
                "kind": "sftp",
                "server": world.server,
                "path": str(repo_dir / "repo"),
                "sftp_host": sshd.host,
                "sftp_port": sshd.port,
                "sftp_user": "root",
                "sftp_host_key": sshd.host_key_line(),
                "sftp_private_key": sshd.private_key,
            },
        )
    target.refresh_from_db()
    assert target.status == "ready", target.status_message
    assert target.free_bytes and target.free_bytes > 0
    assert (repo_dir / "repo" / "config").exists()
    job = make_job(world, target)
    op = back_up(world, job)
    assert op.state == "succeeded", op.error
    # No secret on any argv, and none left on the server.
    assert not list((Path(world.server.profile["state_dir"]) / "backups").glob("*/secrets-*"))


def _fire(world, now=None):
    from monitoring.alerts import evaluate_alerts
    from monitoring.models import Alert, AlertRule

    AlertRule.objects.get_or_create(owner=world.customer, name="backups", kind="backup_missing")
    evaluate_alerts(now)
    return list(Alert.objects.filter(state="firing", rule__kind="backup_missing"))


def test_a_wrong_password_fails_the_run_and_alerts(world, repo_dir):
    target = local_target(world, repo_dir)
    BackupTarget.objects.filter(pk=target.pk).update(password="not-the-password")
    job = make_job(world, BackupTarget.objects.get(pk=target.pk))
    op = back_up(world, job)
    assert op.state == "failed" and "password is wrong" in op.error
    job.refresh_from_db()
    assert job.last_status == "failed"
    assert BackupRun.objects.get(job=job).state == "failed"
    [alert] = _fire(world)
    assert alert.subject == f"backup:{job.uuid.hex}" and "failed" in alert.message


def test_an_unreachable_repository_fails_the_run_and_alerts(world, repo_dir):
    from tests.integration.conftest import free_port

    target = BackupTarget.objects.create(
        name="gone",
        kind="sftp",
        server=world.server,
        path="/srv/repo",
        sftp_host="127.0.0.1",
        sftp_port=free_port(),
        sftp_user="root",
        sftp_host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0d",
        sftp_private_key=world.server.private_key,
        password="x" * 20,
        status="ready",
    )
    job = make_job(world, target)
    op = back_up(world, job)
    assert op.state == "failed", op.error
    assert [a.subject for a in _fire(world)] == [f"backup:{job.uuid.hex}"]


def test_a_missing_backup_alerts_after_one_period(world, repo_dir):
    job = make_job(world, local_target(world, repo_dir))
    assert _fire(world) == []  # new: not due yet
    later = timezone.now() + timedelta(minutes=job.every_minutes + 1)
    [alert] = _fire(world, later)
    assert "No backup" in alert.message
    BackupJob.objects.filter(pk=job.pk).update(last_status="ok", last_success_at=later)
    assert _fire(world, later + timedelta(minutes=5)) == []  # resolved


def test_due_jobs_are_started_by_the_schedule(world, repo_dir):
    from backups.tasks import run_due

    job = make_job(world, local_target(world, repo_dir))
    with world.run(execute=True):
        assert run_due() == 1
    assert BackupRun.objects.get(job=job).state == "succeeded"
    with world.run(execute=True):
        assert run_due() == 0  # not due again within its period


def test_restic_is_installed():
    assert subprocess.run(["restic", "version"], capture_output=True).returncode == 0


def test_restic_check_finds_a_damaged_repository_and_alerts(world, repo_dir):
    target = local_target(world, repo_dir)
    job = make_job(world, target)
    assert back_up(world, job).state == "succeeded"
    with world.run(execute=True):
        op = services.start_verify_target(target, actor=world.admin)
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    assert _fire(world) == []
    packs = sorted(p for p in (repo_dir / "data").rglob("*") if p.is_file())
    packs[0].unlink()  # a lost pack file
    with world.run(execute=True):
        op = services.start_verify_target(target, actor=world.admin)
    op.refresh_from_db()
    assert op.state == "failed"
    target.refresh_from_db()
    assert target.status == "failed" and "restic check" in target.status_message
    [alert] = _fire(world)
    assert alert.subject == f"backup:{job.uuid.hex}" and "failed its check" in alert.message


# ------------------------------------------------------------------ test restores


def _test_restore(world, job):
    from backups.models import TestRestore

    with world.run(execute=True):
        op = services.start_test_restore(job, actor=world.admin)
    op.refresh_from_db()
    return op, TestRestore.objects.filter(job=job).first()


def _scratch_left(world) -> list:
    state = Path(world.server.profile["state_dir"]) / "backups"
    return list(state.glob("*/testrestore-*"))


def _scratch_databases(engine: str) -> list:
    if engine == "mariadb":
        rows = _sql(engine, "mysql", ["SHOW DATABASES LIKE 'uhpscratch%'"])
    else:
        rows = _sql(
            engine,
            "postgres",
            ["SELECT datname FROM pg_database WHERE datname LIKE 'uhpscratch%'"],
        )
    return [r[0] for r in rows]


def test_a_good_snapshot_passes_its_test_restore(world, repo_dir):
    dbs = [_database(world, "mariadb", "tr"), _database(world, "postgresql", "tr")]
    try:
        for db in dbs:
            engine = db.db_server.engine
            _sql(
                engine,
                db.name,
                ["CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)"],
            )
        job = make_job(world, local_target(world, repo_dir))
        assert back_up(world, job).state == "succeeded"
        run = BackupRun.objects.get(job=job)
        op, result = _test_restore(world, job)
        assert op.state == "succeeded", op.error
        assert result.state == "passed" and result.run == run and result.operation == op
        assert result.files_checked >= 4 and result.bytes_checked >= 50_000
        assert result.databases_loaded == 2
        job.refresh_from_db()
        assert job.last_test_status == "passed" and job.last_test_at
        assert _fire(world) == []
        # Nothing left behind: no scratch directory, no scratch database.
        assert _scratch_left(world) == []
        assert _scratch_databases("mariadb") == [] and _scratch_databases("postgresql") == []
        # The result shows on the job's page and on the status board.
        from tests.conftest import login

        client = login(world.admin)
        page = client.get(job.get_absolute_url()).content.decode()
        assert 'data-testid="test-restores"' in page and "Passed" in page
        board = client.get("/backups/").content.decode()
        assert "Test restore passed" in board
        assert login(world.customer).get(job.get_absolute_url()).status_code == 200
    finally:
        for db in dbs:
            adapter_for(ENDPOINTS[db.db_server.engine]).drop_database(db.name)


def test_a_damaged_repository_fails_the_test_restore_and_alerts(world, repo_dir):
    job = make_job(world, local_target(world, repo_dir))
    assert back_up(world, job).state == "succeeded"
    # Damage every data pack in its middle: the content no longer matches its hashes.
    for pack in (p for p in (repo_dir / "data").rglob("*") if p.is_file()):
        raw = bytearray(pack.read_bytes())
        middle = len(raw) // 2
        raw[middle : middle + 64] = bytes(b ^ 0xFF for b in raw[middle : middle + 64])
        pack.write_bytes(bytes(raw))
    op, result = _test_restore(world, job)
    assert op.state == "failed"
    assert result.state == "failed" and result.error
    job.refresh_from_db()
    assert job.last_test_status == "failed"
    [alert] = _fire(world)
    assert alert.subject == f"backup:{job.uuid.hex}" and "test restore" in alert.message
    assert _scratch_left(world) == []


def test_a_dump_that_does_not_load_fails_the_test_restore(world, repo_dir, monkeypatch):
    from backups import tasks

    db = _database(world, "mariadb", "broken")
    try:
        # A dump tool that writes something that is not SQL (a truncated or garbled dump).
        broken = 'printf "CREATE TABLE t (id INT;\\n" > "$1"'
        job = make_job(world, local_target(world, repo_dir))
        with monkeypatch.context() as m:
            m.setattr(
                tasks,
                "dump_argv",
                lambda db_server, name, out, credential: ["sh", "-c", broken, "dump", out],
            )
            assert back_up(world, job).state == "succeeded"
        op, result = _test_restore(world, job)
        assert op.state == "failed" and "does not load" in op.error, op.error
        assert result.state == "failed" and "does not load" in result.error
        [alert] = _fire(world)
        assert "test restore" in alert.message
        assert _scratch_left(world) == []
        assert _scratch_databases("mariadb") == []
        # A later good test restore resolves the alert.
        assert back_up(world, job).state == "succeeded"
        op, result = _test_restore(world, job)
        assert op.state == "succeeded", op.error
        assert _fire(world) == []
    finally:
        adapter_for(ENDPOINTS["mariadb"]).drop_database(db.name)


def test_the_weekly_schedule_test_restores_recent_snapshots_only(world, repo_dir):
    from backups.models import TestRestore
    from backups.tasks import test_restores

    job = make_job(world, local_target(world, repo_dir))
    with world.run(execute=True):
        assert test_restores() == 0  # no snapshot yet
    assert back_up(world, job).state == "succeeded"
    with world.run(execute=True):
        assert test_restores() == 1
    assert TestRestore.objects.get(job=job).state == "passed"
    stale = timezone.now() - timedelta(minutes=3 * job.every_minutes)
    BackupJob.objects.filter(pk=job.pk).update(last_success_at=stale)
    with world.run(execute=True):
        assert test_restores() == 0


def test_ssh_dropped_mid_backup_fails_the_run_and_alerts(world, repo_dir, monkeypatch):
    """The connection to the account's server breaks while restic streams its progress:
    the run, the job and the Operation say failed (nothing claims a snapshot), the alert
    fires; the secrets left behind are removed by the next run, which succeeds."""
    from servers import connection

    job = make_job(world, local_target(world, repo_dir))
    real_open = connection.open_transport
    dropped: list[str] = []

    def open_transport(*args, **kwargs):
        t = real_open(*args, **kwargs)
        real_stream = t.stream_lines

        def stream_lines(argv, *, on_line, **kw):
            def line(text: str) -> None:
                if not dropped:
                    dropped.append(text)
                    t.drop()  # a network fault: the connection closes for real
                on_line(text)

            return real_stream(argv, on_line=line, **kw)

        t.stream_lines = stream_lines
        return t

    with monkeypatch.context() as m:
        m.setattr(connection, "open_transport", open_transport)
        connection._pool.clear()
        op = back_up(world, job)
    connection._pool.clear()
    assert dropped
    assert op.state == "failed" and "connection" in op.error, (op.state, op.error)
    [run] = BackupRun.objects.filter(job=job)
    assert run.state == "failed" and not run.snapshot_id and run.error
    job.refresh_from_db()
    assert job.last_status == "failed" and job.last_success_at is None
    [alert] = _fire(world)
    assert alert.subject == f"backup:{job.uuid.hex}" and "failed" in alert.message
    # The next run works, and no secret is left on the server.
    assert back_up(world, job).state == "succeeded"
    assert not list((Path(world.server.profile["state_dir"]) / "backups").glob("*/secrets-*"))
    assert _fire(world) == []


def test_a_whole_account_restores_in_place_and_to_a_new_place(world, repo_dir):
    """Every site's files and every database of the account, as one Operation with a
    dry-run summary first; then everything as files below a new path."""
    engine = "mariadb"
    db = _database(world, engine, "whole")
    try:
        _sql(
            engine, db.name, ["CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)"]
        )
        at_snapshot, before = _state(engine, db.name), tree(world.site)
        job = make_job(world, local_target(world, repo_dir))
        assert back_up(world, job).state == "succeeded"
        run = BackupRun.objects.get(job=job)
        # Everything changes: files and the database.
        (world.public / "index.html").write_text("defaced")
        (world.public / "stray.txt").write_text("new")
        _sql(engine, db.name, ["INSERT INTO t VALUES (2)", "CREATE TABLE later (id INTEGER)"])
        data = {"run": run, "kind": "account", "destination": "original"}
        check = restore(world, job, data, dry_run=True)
        assert check.state == "succeeded", check.error
        assert f"site {DOMAIN}: " in check.message and f"database {db.name}" in check.message
        assert "replacing its content" in check.message
        assert (world.public / "stray.txt").exists()  # the dry run changed nothing
        op = restore(world, job, data)
        assert op.state == "succeeded", op.error
        assert tree(world.site) == before
        assert _state(engine, db.name) == at_snapshot
        from core.models import AuditEntry

        assert AuditEntry.objects.filter(action="backup.restore").exists()

        # To a new place: the home, the dumps and the configuration, side by side.
        op = restore(world, job, {**data, "destination": "new", "new_path": "restored/all"})
        assert op.state == "succeeded", op.error
        out = world.site.parent.parent / "restored" / "all"
        assert tree(out / "home" / "sites" / DOMAIN) == before
        [dump] = list((out / "dumps").glob(f"{db.name}-*.sql"))
        assert "CREATE TABLE" in dump.read_text()
        import pwd

        assert pwd.getpwuid(dump.stat().st_uid).pw_name == NAME  # the customer may read it
        assert pwd.getpwuid(out.parent.stat().st_uid).pw_name == NAME  # made for the customer
        again = restore(world, job, {**data, "destination": "new", "new_path": "restored/all"})
        assert again.state == "failed" and "exists already" in again.error
    finally:
        adapter_for(ENDPOINTS[engine]).drop_database(db.name)


def test_the_snapshot_browser_lists_folders_and_restores_one_file_or_folder(world, repo_dir):
    from backups.models import SnapshotListing
    from tests.conftest import login

    job = make_job(world, local_target(world, repo_dir))
    before = tree(world.site)
    assert back_up(world, job).state == "succeeded"
    run = BackupRun.objects.get(job=job)
    home = run.manifest["home"]
    public = f"{home}/sites/{DOMAIN}/public"
    # One folder at a time, through an Operation; the page reads the listing.
    with world.run(execute=True):
        op = services.start_browse(job, actor=world.customer, run=run, path=public)
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    listing = SnapshotListing.objects.get(run=run, path=public)
    names = [(e["name"], e["type"]) for e in listing.entries]
    assert names == [("uploads", "dir"), ("index.html", "file"), ("secret.php", "file")]
    secret = next(e for e in listing.entries if e["name"] == "secret.php")
    assert secret["permissions"] == "-rw-r-----" and secret["size"] > 0
    client = login(world.customer)
    page = client.get(f"/backups/{job.uuid}/browse/?run={run.uuid}&path={public}")
    assert page.status_code == 200 and "secret.php" in page.content.decode()

    # One file, in place: content, owner and mode come back; nothing else changes.
    (world.public / "uploads" / "a.bin").unlink()
    (world.public / "index.html").write_text("changed, not restored")
    data = {"run": run, "kind": "path", "path": f"{public}/uploads", "destination": "original"}
    check = restore(world, job, data, dry_run=True)
    assert check.state == "succeeded" and "1 files" in check.message, check.error
    assert not (world.public / "uploads" / "a.bin").exists()
    op = restore(world, job, data)
    assert op.state == "succeeded", op.error
    after = tree(world.site)
    assert after["public/uploads/a.bin"] == before["public/uploads/a.bin"]
    assert after["public/uploads"] == before["public/uploads"]  # mode 0750, the owner's
    assert (world.public / "index.html").read_text() == "changed, not restored"
    # A file to a new place below the home.
    new = {**data, "path": f"{public}/secret.php", "destination": "new", "new_path": "old.php"}
    op = restore(world, job, new)
    assert op.state == "succeeded", op.error
    restored = world.site.parent.parent / "old.php"
    st = restored.stat()
    assert restored.read_text() == "<?php // private\n"
    assert (st.st_mode & 0o777, st.st_uid) == (0o640, (world.public / "index.html").stat().st_uid)
    # Outside the home, or not in the snapshot: refused.
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.do_restore(job, actor=world.customer, data={**data, "path": "/etc/passwd"})
    missing = restore(world, job, {**data, "path": f"{public}/nothing-here"}, dry_run=True)
    assert missing.state == "failed" and "not in snapshot" in missing.error


def test_a_restore_never_writes_through_a_link_the_customer_made(world, repo_dir):
    """The customer owns every folder below the home: a destination that is a link to a
    folder outside it (standing for /etc), or a link on the way there, is refused and
    nothing outside changes; folders made on the way belong to the customer."""
    import grp
    import pwd

    job = make_job(world, local_target(world, repo_dir))
    assert back_up(world, job).state == "succeeded"
    run = BackupRun.objects.get(job=job)
    home = run.manifest["home"]
    public = f"{home}/sites/{DOMAIN}/public"
    outside = Path(tempfile.mkdtemp(prefix="uhp-etc-"))
    try:
        (outside / "passwd").write_text("root:x:0:0\n")
        shutil.rmtree(world.public / "uploads")
        (world.public / "uploads").symlink_to(outside)
        data = {"run": run, "kind": "path", "path": f"{public}/uploads", "destination": "original"}
        op = restore(world, job, data)
        assert op.state == "failed" and "is a symbolic link: refused" in op.error, op.error
        assert sorted(p.name for p in outside.iterdir()) == ["passwd"]
        assert (world.public / "uploads").is_symlink()
        # A link on the way: the site's public folder itself.
        (world.public / "uploads").unlink()
        moved = world.site / "public-real"
        world.public.rename(moved)
        world.public.symlink_to(outside)
        op = restore(world, job, data)
        assert op.state == "failed" and "symbolic link" in op.error, op.error
        assert sorted(p.name for p in outside.iterdir()) == ["passwd"]
        world.public.unlink()
        moved.rename(world.public)
        # Folders made on the way to a new path are the customer's, not root's.
        new = {**data, "path": f"{public}/secret.php", "destination": "new"}
        op = restore(world, job, {**new, "new_path": "made/deeper/old.php"})
        assert op.state == "succeeded", op.error
        made = world.site.parent.parent / "made"
        for folder in (made, made / "deeper"):
            assert pwd.getpwuid(folder.stat().st_uid).pw_name == NAME
            assert grp.getgrgid(folder.stat().st_gid).gr_name == NAME
        assert (made / "deeper" / "old.php").read_text() == "<?php // private\n"
        shutil.rmtree(made)
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@pytest.fixture
def tmpfs():
    """Puts a folder on a file system of its own: its content copied onto a small tmpfs
    mounted over it (owner and mode kept); unmounted at teardown, which shows the folder
    underneath again."""
    mounted = []

    def mount(path: Path, size: str) -> None:
        st = path.stat()
        aside = Path(tempfile.mkdtemp(prefix="uhp-tmpfs-copy-"))
        try:
            subprocess.run(["cp", "-a", f"{path}/.", str(aside)], check=True)
            mode = f"{stat.S_IMODE(st.st_mode):o}"
            options = f"size={size},mode={mode},uid={st.st_uid},gid={st.st_gid}"
            mount = ["mount", "-t", "tmpfs", "-o", options, "uhp-test", str(path)]
            subprocess.run(mount, check=True)
            mounted.append(path)
            subprocess.run(["cp", "-a", f"{aside}/.", str(path)], check=True)
        finally:
            shutil.rmtree(aside)

    yield mount
    for path in reversed(mounted):
        if os.path.ismount(path):  # a test may have unmounted it already
            subprocess.run(["umount", str(path)], check=True)


def test_a_restore_onto_another_file_system_is_copied_whole_or_not_at_all(world, repo_dir, tmpfs):
    """The site's files live on another file system than the restore's staging area (a
    tmpfs mounted over the public folder), so renames fail with EXDEV and the tree is
    copied: owners, modes, times and links as in the snapshot, in place and to a new
    place; a destination link is still refused; and a copy that runs out of space leaves
    the destination as it was, with nothing half placed."""
    uploads = world.public / "uploads"
    (uploads / "big.bin").write_bytes(os.urandom(3 << 20))
    os.chmod(uploads / "big.bin", 0o600)
    (uploads / "link").symlink_to("/etc/passwd")
    for path in (uploads / "big.bin", uploads / "link"):
        os.lchown(path, *(lambda s: (s.st_uid, s.st_gid))((uploads / "a.bin").stat()))
    before = tree(world.public)
    snapshot_mtime = (uploads / "a.bin").stat().st_mtime_ns
    job = make_job(world, local_target(world, repo_dir))
    assert back_up(world, job).state == "succeeded"
    run = BackupRun.objects.get(job=job)
    public = f"{run.manifest['home']}/sites/{DOMAIN}/public"
    data = {"run": run, "kind": "path", "path": f"{public}/uploads", "destination": "original"}
    leftovers = lambda: sorted(p.name for p in world.public.iterdir() if ".panel-" in p.name)  # noqa: E731

    tmpfs(world.public, "16m")
    state = Path(world.server.profile["state_dir"])
    assert world.public.stat().st_dev != state.stat().st_dev  # EXDEV for every rename
    (uploads / "a.bin").write_bytes(b"changed")
    (uploads / "big.bin").unlink()
    (uploads / "stray.txt").write_text("not in the snapshot")
    os.chmod(uploads, 0o777)
    op = restore(world, job, data)
    assert op.state == "succeeded", op.error
    assert tree(world.public) == before
    assert os.readlink(uploads / "link") == "/etc/passwd"  # a link, not a copy of its target
    assert (uploads / "a.bin").stat().st_mtime_ns == snapshot_mtime
    assert leftovers() == []
    # The whole site to a new place on that file system: folders made on the way are the
    # customer's, the tree is the snapshot's.
    files = {"run": run, "kind": "files", "site": DOMAIN, "destination": "new"}
    op = restore(world, job, {**files, "new_path": f"sites/{DOMAIN}/public/again/site"})
    assert op.state == "succeeded", op.error
    again = world.public / "again"
    assert again.stat().st_uid == (world.public / "index.html").stat().st_uid
    assert tree(again / "site" / "public") == before
    shutil.rmtree(again)
    # A destination that is a link is refused on this file system too.
    outside = Path(tempfile.mkdtemp(prefix="uhp-etc-"))
    try:
        shutil.rmtree(uploads)
        uploads.symlink_to(outside)
        op = restore(world, job, data)
        assert op.state == "failed" and "is a symbolic link: refused" in op.error, op.error
        assert list(outside.iterdir()) == [] and uploads.is_symlink()
    finally:
        shutil.rmtree(outside)
    uploads.unlink()

    # Out of space mid-copy: the snapshot's uploads (3 MB) do not fit on a 2 MB tmpfs.
    subprocess.run(["umount", str(world.public)], check=True)  # the folder underneath
    (uploads / "big.bin").unlink()
    tmpfs(world.public, "2m")
    live = tree(world.public)
    op = restore(world, job, data)
    assert op.state == "failed" and "No space left on device" in op.error, op.error
    assert tree(world.public) == live and leftovers() == []
    assert shutil.disk_usage(world.public).used < 1 << 20  # the partial copy is gone


def test_placing_across_file_systems_keeps_set_id_bits_fifos_and_times(tmp_path):
    """place.py alone (as the restores run it), from /dev/shm (tmpfs) into a home on
    another file system: a set-uid file, a set-gid folder, a fifo and a link come out as
    they went in, with their owners and times; nothing is left beside the destination."""
    from backups.tasks import PLACE

    src = Path(tempfile.mkdtemp(prefix="uhp-place-", dir="/dev/shm"))
    try:
        home = tmp_path / "home"
        (home / "site").mkdir(parents=True)
        (home / "site" / "old.txt").write_text("replaced")
        tree_root = src / "site"
        (tree_root / "bin").mkdir(parents=True)
        (tree_root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
        os.mkfifo(tree_root / "pipe")
        (tree_root / "link").symlink_to("../../../etc/shadow")
        for path, mode in ((tree_root / "bin" / "tool", 0o4750), (tree_root / "bin", 0o2770)):
            os.chown(path, 4321, 4321)
            os.chmod(path, mode)
        os.lchown(tree_root / "link", 4321, 4321)
        os.utime(tree_root / "bin" / "tool", ns=(1_000_000_000, 1_500_000_000))
        assert src.stat().st_dev != home.stat().st_dev
        want = {
            p.relative_to(tree_root): (p.lstat().st_mode, p.lstat().st_uid, p.lstat().st_gid)
            for p in tree_root.rglob("*")
        }
        argv = ["python3", "-c", PLACE, str(tree_root), str(home / "site"), str(home), "root"]
        res = subprocess.run([*argv, "abcd1234"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        dest = home / "site"
        got = {
            p.relative_to(dest): (p.lstat().st_mode, p.lstat().st_uid, p.lstat().st_gid)
            for p in dest.rglob("*")
        }
        assert got == want
        assert os.readlink(dest / "link") == "../../../etc/shadow"
        assert (dest / "bin" / "tool").stat().st_mtime_ns == 1_500_000_000
        assert sorted(p.name for p in home.iterdir()) == ["site"]
    finally:
        shutil.rmtree(src)
