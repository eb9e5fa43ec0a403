"""Faults in the websites' remote steps, against a private sshd, nginx and system accounts:
a worker killed mid site-create, an SSH connection dropped while the system account is made,
a full disk under the vhost directory, sshd failing to reload after a valid SFTP block.

After each fault the Operation and the site (or account) say failed and why, nothing
half-applied serves, and a retry finishes the job.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from core.models import Operation
from core.operations import retry_operation
from tests.conftest import make_user, wait_until
from tests.integration.faults import (
    die,
    drop_after,
    fill,
    mount_tmpfs,
    run_in_doomed_worker,
    umount,
)
from tests.integration.web_stack import WebStack, drop_user
from websites import services
from websites.models import SystemAccount, Website
from websites.sysaccounts import DEFAULT_PAGE

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST = "127.0.0.5"
EMAIL = "uhpfault@example.com"  # account name "uhpfault": a real Linux user during the tests
NAME = "uhpfault"
READY = "This site is ready"


@pytest.fixture(scope="module")
def stack():
    web = WebStack(HOST, NAME)
    yield web
    web.stop()


@pytest.fixture
def server(stack, admin_user):
    # Each test starts from an empty server: no account, no managed files.
    drop_user(NAME)
    subprocess.run(["rm", "-rf", str(stack.homes / NAME)], check=True)
    for d in (stack.nginx.sites, stack.base / "sshd.d", stack.base / "state"):
        subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir()
    subprocess.run(stack.nginx.cmd("-s", "reload"), check=True)
    server = stack.server(admin_user)
    yield server
    subprocess.run(stack.nginx.cmd("-s", "reload"), capture_output=True)


@pytest.fixture
def customer(db):
    user = make_user(EMAIL, "customer")
    assert user.account_name == NAME
    return user


@pytest.fixture
def run_ops(q_sync, django_capture_on_commit_callbacks):
    """Operations started inside the block run (inline) when it ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def body(stack, domain: str) -> tuple[int, str]:
    return stack.nginx.get(domain)


def serves_ready(stack, domain: str) -> bool:
    status, text = body(stack, domain)
    return status == 200 and READY in text


def create(admin_user, customer, server, domain: str) -> Website:
    return services.do_create_website(
        actor=admin_user,
        data={"domain": domain, "server": server, "owner": customer, "kind": "static"},
    )


def operation_of(site: Website) -> Operation:
    return Operation.objects.filter(target_id=str(site.uuid)).latest("created_at")


# --- 1. the worker killed mid site-create ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_worker_killed_after_the_vhost_is_swapped_in(
    stack, server, admin_user, customer, monkeypatch, q_sync, settings
):
    """A real SIGKILL of the worker running the site's creation, after the vhost is swapped
    in and before nginx is reloaded or the site checked: nginx keeps serving without the
    site; once the dead worker is noticed the operation *and the site* say failed and why;
    a retry makes the site active and serving."""
    queued: list[Operation] = []
    with monkeypatch.context() as m:  # queued, not run: the doomed child runs it
        m.setattr("core.operations._enqueue", queued.append)
        site = create(admin_user, customer, server, "killed.fault.test")
    (op,) = queued

    def arm() -> None:  # in the worker: die once the vhost is swapped in, before the reload
        from servers import tasks as server_tasks
        from servers.engine.engine import Engine

        class Doomed(Engine):
            def __init__(self, *args, **kwargs):
                hook = lambda phase: die() if phase == "reload" else None  # noqa: E731
                super().__init__(*args, **{**kwargs, "hook": hook, "batch": False})

        server_tasks.Engine = Doomed

    run_in_doomed_worker(op, arm)
    vhost = stack.nginx.sites / "killed.fault.test.conf"
    assert vhost.exists()  # swapped in ...
    assert not serves_ready(stack, "killed.fault.test")  # ... and not live
    site.refresh_from_db()
    assert op.state == "failed" and "stopped" in op.error
    assert site.status == "failed" and "stopped" in site.status_message, site.status_message
    assert not serves_ready(stack, "killed.fault.test")

    # A retry (a new worker) finishes the interrupted apply and the site.
    retry = retry_operation(op, actor=admin_user)
    retry.refresh_from_db()
    site.refresh_from_db()
    assert retry.state == "succeeded", retry.error
    assert site.status == "active", site.status_message
    assert serves_ready(stack, "killed.fault.test")
    server.refresh_from_db()
    assert server.apply_run == ""
    assert not (stack.base / "state" / "pending").exists()


@pytest.mark.django_db(transaction=True)
def test_worker_killed_while_the_server_runs_the_batch(
    stack, server, admin_user, customer, monkeypatch, q_sync
):
    """The worker dies while the server swaps, reloads and verifies in one batch: the
    server finishes it (the site serves), but nobody saw the end, so the site says failed
    rather than active; a retry checks every file, finds them applied and says active."""
    queued: list[Operation] = []
    with monkeypatch.context() as m:
        m.setattr("core.operations._enqueue", queued.append)
        site = create(admin_user, customer, server, "batch.fault.test")
    (op,) = queued

    def arm() -> None:  # in the worker: the server kills it just before committing
        import os

        from servers import tasks as server_tasks
        from servers.engine import Step
        from servers.engine.engine import Engine

        killer = Step(["sh", "-c", f"kill -9 {os.getpid()}; sleep 0.5"])

        class Doomed(Engine):
            def __init__(self, *args, **kwargs):
                hook = lambda at: [killer] if at == "before-commit" else []  # noqa: E731
                super().__init__(*args, **{**kwargs, "step_hook": hook})

        server_tasks.Engine = Doomed

    run_in_doomed_worker(op, arm)
    lock = stack.base / "state" / "lock"
    wait_until(lambda: not lock.exists())  # the server finishes the batch
    assert serves_ready(stack, "batch.fault.test")
    site.refresh_from_db()
    assert op.state == "failed" and site.status == "failed", site.status
    server.refresh_from_db()
    assert server.apply_run  # the panel knows a run may have changed files

    retry = retry_operation(op, actor=admin_user)
    retry.refresh_from_db()
    site.refresh_from_db()
    server.refresh_from_db()
    assert retry.state == "succeeded", retry.error
    assert site.status == "active" and server.apply_run == ""
    assert serves_ready(stack, "batch.fault.test")


# --- 3. SSH dropped while the system account is made ---------------------------------------------


def user_exists(name: str) -> bool:
    return subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0


def test_ssh_dropped_while_the_account_is_created(
    stack, server, admin_user, customer, monkeypatch, run_ops
):
    """useradd ran on the server but the answer was lost: the site and the account say
    failed with the reason, nothing serves; the retry finds the user it made and finishes."""
    dropped = drop_after(monkeypatch, lambda argv: argv[3:5] == ["panel-account", "ensure"])
    with run_ops():
        site = create(admin_user, customer, server, "dropped.fault.test")
    assert dropped and f"panel-account ensure {NAME}" in dropped[0]
    op = operation_of(site)
    site.refresh_from_db()
    account = SystemAccount.objects.get(server=server, user=customer)
    assert op.state == "failed" and op.error
    assert site.status == "failed" and "connection" in site.status_message
    assert account.status == "failed" and "connection" in account.status_message
    assert user_exists(NAME)  # it ran on the server
    assert not (stack.nginx.sites / "dropped.fault.test.conf").exists()
    assert not serves_ready(stack, "dropped.fault.test")

    with run_ops():
        retry = retry_operation(op, actor=admin_user)
    retry.refresh_from_db()
    site.refresh_from_db()
    account.refresh_from_db()
    assert retry.state == "succeeded", retry.error
    assert site.status == "active" and account.status == "active"
    assert serves_ready(stack, "dropped.fault.test")
    assert (stack.base / "sshd.d" / f"panel-{NAME}.conf").exists()


def test_ssh_dropped_while_the_web_root_is_made(
    stack, server, admin_user, customer, monkeypatch, run_ops
):
    """The account exists, the connection breaks after the site's directory is made: failed
    with the reason; the retry does not overwrite the page already there."""
    dropped = drop_after(monkeypatch, lambda argv: argv[3:5] == ["panel-account", "site"])
    with run_ops():
        site = create(admin_user, customer, server, "root.fault.test")
    assert dropped
    site.refresh_from_db()
    assert site.status == "failed" and "connection" in site.status_message
    page = stack.homes / NAME / "sites" / "root.fault.test" / "public" / "index.html"
    assert page.read_text() == DEFAULT_PAGE
    page.write_text(f"{READY}: the customer's own page")
    with run_ops():
        retry_operation(operation_of(site), actor=admin_user)
    site.refresh_from_db()
    assert site.status == "active", site.status_message
    assert body(stack, "root.fault.test") == (200, f"{READY}: the customer's own page")


# --- 4. a full disk under the vhost directory --------------------------------------------------


@pytest.fixture
def tiny_sites_dir(stack, server):
    """The nginx vhost directory on a 1 MB tmpfs of its own (a real ENOSPC)."""
    sites: Path = stack.nginx.sites
    mount_tmpfs(sites, "0755")
    yield sites
    for name in (".filler", ".filler2"):
        with contextlib.suppress(FileNotFoundError):
            (sites / name).unlink()
    umount(sites)


def test_full_disk_while_writing_the_vhost(
    stack, server, admin_user, customer, run_ops, tiny_sites_dir
):
    """An existing site keeps its live vhost and keeps serving; the new one fails with "No
    space left on device" and serves nothing; once space is freed a retry makes it active."""
    with run_ops():
        first = create(admin_user, customer, server, "first.fault.test")
    first.refresh_from_db()
    assert first.status == "active", first.status_message
    live = (tiny_sites_dir / "first.fault.test.conf").read_bytes()
    fill(tiny_sites_dir)
    with run_ops():
        second = create(admin_user, customer, server, "second.fault.test")
    op = operation_of(second)
    second.refresh_from_db()
    assert op.state == "failed" and "No space left on device" in op.error, op.error
    assert second.status == "failed" and "No space left on device" in second.status_message
    assert (tiny_sites_dir / "first.fault.test.conf").read_bytes() == live
    assert not (tiny_sites_dir / "second.fault.test.conf").exists()
    # The partial staging is gone and the server's lock free at once (not a minute later).
    assert not [p.name for p in tiny_sites_dir.iterdir() if p.name.startswith(".panel")]
    assert not (stack.base / "state" / "lock").exists()
    assert serves_ready(stack, "first.fault.test")
    assert not serves_ready(stack, "second.fault.test")
    first.refresh_from_db()
    assert first.status == "active"

    for name in (".filler", ".filler2"):
        with contextlib.suppress(FileNotFoundError):
            (tiny_sites_dir / name).unlink()
    with run_ops():
        retry_operation(op, actor=admin_user)
    second.refresh_from_db()
    assert second.status == "active", second.status_message
    assert serves_ready(stack, "second.fault.test") and serves_ready(stack, "first.fault.test")
    assert not [p.name for p in tiny_sites_dir.iterdir() if p.name.startswith(".")]


def test_full_disk_while_rewriting_a_live_vhost(
    stack, server, admin_user, customer, run_ops, tiny_sites_dir
):
    """A change to a live site (a new alias) that cannot be written: the live vhost stays
    byte for byte, nginx serves the old configuration (the alias reaches no site), the
    site says failed with the disk's words; with space again a retry serves the alias."""
    with run_ops():
        site = create(admin_user, customer, server, "live.fault.test")
    vhost = tiny_sites_dir / "live.fault.test.conf"
    before = vhost.read_bytes()
    fill(tiny_sites_dir)
    with run_ops():
        services.do_update_website(site, actor=admin_user, data={"aliases": "www.live.fault.test"})
    site.refresh_from_db()
    op = Operation.objects.latest("created_at")  # the server's apply
    assert op.kind == "server.apply" and op.state == "failed"
    assert "No space left on device" in op.error, op.error
    assert site.status == "failed" and "No space left on device" in site.status_message
    assert vhost.read_bytes() == before
    assert serves_ready(stack, "live.fault.test")
    assert not serves_ready(stack, "www.live.fault.test")

    for name in (".filler", ".filler2"):
        with contextlib.suppress(FileNotFoundError):
            (tiny_sites_dir / name).unlink()
    with run_ops():
        retry_operation(op, actor=admin_user)
    site.refresh_from_db()
    assert site.status == "active", site.status_message
    assert serves_ready(stack, "www.live.fault.test") and serves_ready(stack, "live.fault.test")


# --- 5. sshd does not reload after a valid SFTP block ------------------------------------------


def test_failing_sshd_reload_rolls_the_sftp_block_back(
    stack, server, admin_user, customer, run_ops
):
    """``sshd -t`` accepts the account's Match block but sshd cannot be reloaded (its pid file
    names no process): the block is taken back out, and since sshd does not reload even
    without it, the whole change is (nginx is reloaded back to the previous vhosts): the
    account and the site say failed and why, nothing new serves; with sshd reachable again a
    retry puts both in."""
    dead = stack.base / "dead.pid"
    dead.write_text("999999\n")
    server.profile = {**server.profile, "sshd_pid_file": str(dead)}
    server.save()
    with run_ops():
        site = create(admin_user, customer, server, "sftp.fault.test")
    account = SystemAccount.objects.get(server=server, user=customer)
    block = stack.base / "sshd.d" / f"panel-{NAME}.conf"
    assert not block.exists()
    assert not [p for p in (stack.base / "sshd.d").iterdir() if p.name.startswith(".panel")]
    assert account.status == "failed" and "sshd is not running" in account.status_message
    site.refresh_from_db()
    op = operation_of(site)
    assert op.state == "failed" and "sshd is not running" in op.error
    assert site.status == "failed" and "sshd is not running" in site.status_message
    assert not (stack.nginx.sites / "sftp.fault.test.conf").exists()
    assert not serves_ready(stack, "sftp.fault.test")

    server.profile = {**server.profile, "sshd_pid_file": str(stack.base / "sshd.pid")}
    server.save()
    with run_ops():
        retry_operation(op, actor=admin_user)
    account.refresh_from_db()
    assert account.status == "active", account.status_message
    assert "ChrootDirectory" in block.read_text()
    site.refresh_from_db()
    assert site.status == "active" and serves_ready(stack, "sftp.fault.test")
