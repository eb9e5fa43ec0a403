"""fail2ban through the apply engine, against a private fail2ban-server (its own copy of the
configuration, database, socket and a dummy ban action that never touches the kernel's
firewall), reached over the loopback sshd: the jails are validated with fail2ban-client -t
and loaded; failed SSH logins written to the jail's log produce a ban; an Operation reads it
onto the server page; staff lift it (audited) and fail2ban no longer bans the address."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEntry
from servers import connection, services
from servers.engine.engine import Engine
from servers.fail2ban import UNIT
from tests.conftest import login
from tests.integration.conftest import need, stop_pidfile, world_readable_tmp

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
ATTACKER = "203.0.113.5"  # TEST-NET-3


def wait_for(check, timeout=10.0):
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def f2b():
    server_bin = need("fail2ban-server")
    need("fail2ban-client")
    base = world_readable_tmp("uhp-f2b-")
    conf = base / "conf"
    shutil.copytree("/etc/fail2ban", conf)
    (conf / "jail.d" / "defaults-debian.conf").unlink(missing_ok=True)
    (conf / "fail2ban.local").write_text(f"[Definition]\ndbfile = {base}/db.sqlite3\n")
    (conf / "action.d" / "dummy.local").write_text(f"[Init]\ntarget = {base}/dummy\n")
    for name in ("auth.log", "nginx-error.log"):
        (base / name).touch()
    (base / "www").mkdir()
    sock, pid = base / "f2b.sock", base / "f2b.pid"
    subprocess.Popen(  # noqa: S603 - fixed argv
        [
            server_bin,
            "-f",
            "-x",
            "-c",
            str(conf),
            "-s",
            str(sock),
            "-p",
            str(pid),
            "--logtarget",
            str(base / "f2b.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: sock.exists() and pid.exists())
    yield base
    stop_pidfile(pid)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server(ssh_server, f2b):
    ssh_server.profile = {
        "state_dir": str(f2b / "state"),
        "fail2ban_conf_dir": str(f2b / "conf"),
        "fail2ban_socket": str(f2b / "f2b.sock"),
        "fail2ban_banaction": "dummy",
        "fail2ban_sshd_log": str(f2b / "auth.log"),
        "fail2ban_maxretry": 3,
        "nginx_error_log": str(f2b / "nginx-error.log"),
        "webroot_base": str(f2b / "www"),
    }
    ssh_server.components = {"prepared_at": "2026-01-01T00:00:00"}
    ssh_server.save()
    return ssh_server


def apply(server):
    server.refresh_from_db()
    return Engine(server, connection.open_transport(server)).apply({UNIT})


def client(f2b: Path, *args: str) -> str:
    argv = ["fail2ban-client", "-s", str(f2b / "f2b.sock"), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_jails_ban_listed_and_lifted(
    server, f2b, admin_user, customer, q_sync, django_capture_on_commit_callbacks
):
    result = apply(server)
    assert not result.failed_units, result.failed_units
    jail = f2b / "conf" / "jail.d" / "hosting-panel.local"
    assert "[sshd]" in jail.read_text() and "banaction = dummy" in jail.read_text()
    assert "nginx-http-auth, sshd" in client(f2b, "status")

    now = time.strftime("%b %e %H:%M:%S")
    with open(f2b / "auth.log", "a") as log:
        for port in (4001, 4002, 4003, 4004):
            log.write(
                f"{now} web sshd[77]: Failed password for root from {ATTACKER} port {port} ssh2\n"
            )
    wait_for(lambda: ATTACKER in client(f2b, "status", "sshd"))

    with django_capture_on_commit_callbacks(execute=True):
        op = services.start_refresh_bans(server, actor=admin_user)
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    server.refresh_from_db()
    assert server.bans["jails"]["sshd"] == [ATTACKER]
    page = login(admin_user).get(f"/servers/{server.uuid}/").content.decode()
    assert ATTACKER in page and f"/servers/{server.uuid}/unban/" in page

    outsider = login(customer)
    url = f"/api/v1/servers/{server.uuid}/unban/"
    body = {"jail": "sshd", "address": ATTACKER}
    assert outsider.post(url, body, content_type="application/json").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        resp = login(admin_user).post(url, body, content_type="application/json")
    assert resp.status_code == 202, resp.content
    assert ATTACKER not in client(f2b, "status", "sshd")
    server.refresh_from_db()
    assert server.bans["jails"]["sshd"] == []
    entry = AuditEntry.objects.get(action="server.unban")
    assert entry.changes == {"jail": "sshd", "address": ATTACKER}

    # Bad input never reaches fail2ban.
    for bad in ({"jail": "sshd; x", "address": ATTACKER}, {"jail": "sshd", "address": "1.2"}):
        with pytest.raises(ValidationError):
            services.do_unban(server, actor=admin_user, data=bad)


def test_a_jail_fail2ban_refuses_keeps_the_live_file(server, f2b):
    assert not apply(server).failed_units
    jail = f2b / "conf" / "jail.d" / "hosting-panel.local"
    before = jail.read_text()
    server.profile = {**server.profile, "fail2ban_banaction": "no-such-action"}
    server.save()
    result = apply(server)
    assert UNIT in result.failed_units and "fail2ban-client -t" in result.failed_units[UNIT]
    assert jail.read_text() == before
    assert "sshd" in client(f2b, "status")
