"""panelctl against a live panel (pytest-django's live_server), run as a subprocess exactly
as a user runs it: profiles in a 0600 file, list/show/create/delete, --json for scripts,
an operation followed live while a worker runs it, and failures with their exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.conf import settings

from accounts import services as account_services
from core.models import Operation
from core.operations import execute_operation, start_operation
from dns.models import Record, Zone
from tests import support
from tests.conftest import make_user, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def home(tmp_path):
    return tmp_path


def run(home: Path, *args: str, token: str | None = None, check: int | None = 0):
    env = {
        **os.environ,
        "PANELCTL_CONFIG": str(home / "panelctl" / "config.ini"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PANELCTL_TOKEN", None)
    if token:
        env["PANELCTL_TOKEN"] = token
    proc = subprocess.run(
        [sys.executable, "-m", "panelctl", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=60,
    )
    if check is not None:
        assert proc.returncode == check, (args, proc.stdout, proc.stderr)
    return proc


def raw_token(user, scope="write"):
    _token, raw = account_services.do_create_token(
        user, actor=user, data={"name": "cli", "scope": scope}
    )
    return raw


@pytest.fixture
def customer_cli(home, live_server):
    user = make_user("cli@example.com", "customer")
    token = raw_token(user)
    run(home, "login", "--url", live_server.url, token=token)
    return user


def test_login_keeps_a_profile_only_its_owner_may_read(home, live_server):
    user = make_user("login@example.com", "customer")
    token = raw_token(user)
    bad = run(home, "login", "--url", live_server.url, token="uhp_wrong", check=2)
    assert "401" in bad.stderr or "403" in bad.stderr
    assert not (home / "panelctl" / "config.ini").exists()
    done = run(home, "--profile", "work", "login", "--url", live_server.url, token=token)
    assert "login@example.com" in done.stdout
    file = home / "panelctl" / "config.ini"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert token in file.read_text()
    listed = run(home, "--json", "profiles").stdout
    assert json.loads(listed) == [{"profile": "work", "url": live_server.url}]
    assert token not in listed
    me = json.loads(run(home, "--profile", "work", "--json", "whoami").stdout)
    assert me["email"] == "login@example.com"
    file.chmod(0o644)  # readable by others: refused, as ssh refuses such a key
    refused = run(home, "--profile", "work", "whoami", check=3)
    assert "chmod 600" in refused.stderr
    file.chmod(0o600)
    assert run(home, "--profile", "nope", "whoami", check=3).stderr


def test_zones_and_records_list_show_create_delete(home, customer_cli):
    created = json.loads(
        run(home, "--json", "zones", "create", "--set", "name=cli-example.com").stdout
    )
    zone = Zone.objects.get(uuid=created["uuid"])
    assert zone.owner == customer_cli and zone.name == "cli-example.com"
    table = run(home, "zones", "list").stdout
    assert "cli-example.com" in table and table.splitlines()[0].split()[:2] == ["UUID", "NAME"]
    record = json.loads(
        run(
            home,
            "--json",
            "records",
            "create",
            "--set",
            f"zone={zone.uuid}",
            "--set",
            "name=www",
            "--set",
            "type=A",
            "--set",
            "content=192.0.2.10",
            "--set",
            "ttl=600",
        ).stdout
    )
    assert Record.objects.get(uuid=record["uuid"]).ttl == 600
    listed = json.loads(run(home, "--json", "records", "list", "-f", f"zone={zone.uuid}").stdout)
    assert [r["content"] for r in listed if r["name"] == "www"] == ["192.0.2.10"]
    bad = run(
        home,
        "records",
        "create",
        "--set",
        f"zone={zone.uuid}",
        "--set",
        "type=A",
        "--set",
        "name=www2",
        "--set",
        "content=not-an-ip",
        check=2,
    )
    assert "content" in bad.stderr
    shown = json.loads(run(home, "--json", "records", "show", record["uuid"]).stdout)
    assert shown["name"] == "www"
    run(home, "records", "delete", record["uuid"], "--yes")
    assert not Record.objects.filter(uuid=record["uuid"]).exists()
    # Another customer's zone is not there for this token.
    other = Zone.objects.create(
        name="other.example.com", owner=make_user("o@example.com", "customer")
    )
    assert "404" in run(home, "zones", "show", str(other.uuid), check=2).stderr
    assert "404" in run(home, "zones", "delete", str(other.uuid), "--yes", check=2).stderr
    assert Zone.objects.filter(pk=other.pk).exists()


def test_servers_websites_vps_and_mailboxes_are_listed(home, live_server, admin_user):
    from mail.models import Mailbox, MailDomain
    from servers.models import Server
    from vps.models import Hypervisor, Vps, VpsPlan
    from websites.models import Website

    token = raw_token(admin_user)
    run(home, "login", "--url", live_server.url, token=token)
    created = json.loads(
        run(
            home,
            "--json",
            "servers",
            "create",
            "--set",
            "name=cli-srv",
            "--set",
            "address=127.0.0.1",
        ).stdout
    )
    server = Server.objects.get(uuid=created["uuid"])
    Website.objects.create(domain="cli-site.example.com", server=server, owner=admin_user)
    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    plan = VpsPlan.objects.create(name="p", owner=admin_user)
    Vps.objects.create(hostname="cli-vm", owner=admin_user, plan=plan, hypervisor=hv)
    domain = MailDomain.objects.create(
        domain="cli-mail.example.com", server=server, owner=admin_user
    )
    Mailbox.objects.create(domain=domain, local_part="info", password_hash="{SHA512-CRYPT}x")
    assert "cli-srv" in run(home, "servers", "list").stdout
    assert "cli-site.example.com" in run(home, "websites", "list").stdout
    assert "cli-vm" in run(home, "vps", "list").stdout
    boxes = json.loads(run(home, "--json", "mailboxes", "list").stdout)
    assert [b["address"] for b in boxes] == ["info@cli-mail.example.com"]
    # A read-only token lists but cannot delete.
    run(
        home,
        "--profile",
        "ro",
        "login",
        "--url",
        live_server.url,
        token=raw_token(admin_user, scope="read"),
    )
    assert (
        "403"
        in run(
            home, "--profile", "ro", "servers", "delete", str(server.uuid), "--yes", check=2
        ).stderr
    )


def test_an_operation_is_followed_live_to_its_end(home, customer_cli):
    support.gate.clear()
    op = start_operation(kind="test.gate", task="tests.support.wait_for_gate", owner=customer_cli)
    env = {
        **os.environ,
        "PANELCTL_CONFIG": str(home / "panelctl" / "config.ini"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "panelctl",
            "operations",
            "follow",
            str(op.uuid),
            "--interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=home,
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stderr), daemon=True)
    reader.start()
    worker = threading.Thread(target=execute_operation, args=(op.pk,))  # the worker's code path
    worker.start()
    try:
        wait_until(lambda: any("holding" in line for line in seen), timeout=30)
        assert proc.poll() is None  # still following while the operation runs
    finally:
        support.gate.set()
        worker.join(30)
    out, _ = proc.communicate(timeout=30)
    reader.join(5)
    assert proc.returncode == 0, (out, seen)
    assert out.strip() == "succeeded: released"
    assert Operation.objects.get(pk=op.pk).state == "succeeded"


def test_an_action_starts_an_operation_and_a_failure_exits_1(home, live_server, admin_user, q_sync):
    import socket

    from servers.models import Server

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = raw_token(admin_user)
    run(home, "login", "--url", live_server.url, token=token)
    created = json.loads(
        run(
            home,
            "--json",
            "servers",
            "create",
            "--set",
            "name=closed",
            "--set",
            "address=127.0.0.1",
            "--set",
            f"ssh_port={port}",
        ).stdout
    )
    failed = run(
        home,
        "--json",
        "servers",
        "action",
        created["uuid"],
        "test-connection",
        "--interval",
        "0.1",
        check=1,
    )
    body = json.loads(failed.stdout)
    assert body["state"] == "failed" and body["kind"] == "server.test_connection"
    op = Operation.objects.get(uuid=body["uuid"])
    assert op.target_id == created["uuid"] and op.state == "failed"
    assert Server.objects.filter(uuid=created["uuid"]).exists()


def test_an_unreachable_panel_exits_3(home):
    env_url = "http://127.0.0.1:9"  # discard port: nothing answers
    cfg = home / "panelctl"
    cfg.mkdir(mode=0o700)
    (cfg / "config.ini").write_text(f"[default]\nurl = {env_url}\ntoken = uhp_x\n")
    (cfg / "config.ini").chmod(0o600)
    proc = run(home, "servers", "list", check=3)
    assert "cannot reach" in proc.stderr
