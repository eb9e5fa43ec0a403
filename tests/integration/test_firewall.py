"""Firewall rules applied with real nft inside a network namespace this test creates.

The "server" is an sshd running inside the namespace at 10.200.0.2; the panel reaches it over
a veth pair from 10.200.0.1. nft only ever runs inside that namespace (through that sshd).
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from servers import connection, firewall, services
from servers.engine.engine import Engine
from servers.models import FirewallRule, Server
from tests.integration.conftest import (
    free_port,
    need,
    start_sshd,
    stop_pidfile,
    wait_port,
    world_readable_tmp,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST, PANEL = "10.200.0.2", "10.200.0.1"


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def netns_pids(ns: str) -> list[int]:
    out = sh("ip", "netns", "pids", ns, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


@pytest.fixture
def netns():
    need("ip")
    need("nft")
    tag = secrets.token_hex(3)
    ns, outer, inner = f"uhp-{tag}", f"uhpo{tag}", f"uhpi{tag}"
    base = world_readable_tmp("uhp-fw-")
    try:
        sh("ip", "netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        from tests.conftest import require_real

        require_real(f"cannot create a network namespace: {exc.stderr}")
    try:
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "addr", "add", f"{PANEL}/24", "dev", outer)
        sh("ip", "link", "set", outer, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{HOST}/24", "dev", inner)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        daemon = start_sshd(base, HOST, 22, netns=ns)
        wait_port(HOST, 22)
        web = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-m", "http.server", "8080", "--bind", HOST],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=base,
        )
        wait_port(HOST, 8080)
        yield {"ns": ns, "sshd": daemon, "base": base}
    finally:
        if "web" in locals():
            web.terminate()
            web.wait(5)
        stop_pidfile(base / "sshd.pid")
        # Every process still in the namespace (sshd sessions, revert timers) is ours: stop
        # them all, so nothing outlives the test in a deleted namespace.
        for _ in range(50):
            pids = netns_pids(ns)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        assert netns_pids(ns) == [], "processes left in the test namespace"
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", outer, check=False)
        shutil.rmtree(base, ignore_errors=True)


def reachable(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def profile(netns) -> dict:
    return {
        "nft_file": f"{netns['base']}/hosting-panel.nft",
        "state_dir": f"{netns['base']}/state",
        "firewall_confirm_seconds": 3,
    }


@pytest.fixture
def fw_server(netns, admin_user):
    server = Server.objects.create(
        name="fw1",
        address=HOST,
        ssh_port=22,
        owner=admin_user,
        private_key=netns["sshd"].private_key,
        profile=profile(netns),
    )
    connection.open_transport(server, reuse=False).close()  # learns the panel's address
    server.refresh_from_db()
    return server


def apply(server, lines=None):
    server.refresh_from_db()
    t = connection.open_transport(server, reuse=False)
    try:
        return Engine(
            server,
            t,
            (lines.append if lines is not None else lambda m: None),
            reconnect=lambda: connection.open_transport(server, reuse=False),
        ).apply()
    finally:
        t.close()


def in_ns(netns, *argv):
    return sh("ip", "netns", "exec", netns["ns"], *argv, check=False)


def test_panel_address_is_what_the_server_sees(fw_server):
    assert fw_server.panel_address == PANEL and fw_server.panel_ssh_port == 22


def test_rules_applied_inside_namespace(netns, fw_server, admin_user):
    root_tables_before = sh("nft", "list", "tables").stdout
    FirewallRule.objects.create(
        server=fw_server, position=10, port=22, source=f"{PANEL}/32", comment="panel ssh"
    )
    web = FirewallRule.objects.create(server=fw_server, position=20, port=8080)
    result = apply(fw_server)
    assert result.reloaded == ["nftables"] and not result.failed_units
    listed = in_ns(netns, "nft", "list", "table", "inet", "hosting_panel").stdout
    assert "tcp dport 8080 accept" in listed and 'comment "panel ssh"' in listed
    assert reachable(8080)

    web.action = FirewallRule.Action.DENY
    web.save()
    apply(fw_server)
    assert not reachable(8080)
    connection.open_transport(fw_server, reuse=False).close()  # SSH from the panel still works
    assert "hosting_panel" not in sh("nft", "list", "tables").stdout
    assert sh("nft", "list", "tables").stdout == root_tables_before

    again = apply(fw_server)
    assert again.written == [] and again.reloaded == []
    assert not [p for p in os.listdir(netns["base"]) if p.startswith("nft-")]


def test_lockout_is_refused(netns, fw_server, admin_user):
    with pytest.raises(ValidationError, match="cut the panel"):  # no rule allows SSH yet
        services.do_save_rule(fw_server, actor=admin_user, data={"position": 20, "port": 80})
    ssh = services.do_save_rule(
        fw_server, actor=admin_user, data={"position": 10, "port": 22, "source": f"{PANEL}/32"}
    )
    services.do_save_rule(fw_server, actor=admin_user, data={"position": 20, "port": 80})
    with pytest.raises(ValidationError, match="cut the panel"):
        services.do_save_rule(
            fw_server,
            actor=admin_user,
            data={"position": 1, "action": "deny", "port": 1, "port_end": 1024},
        )
    with pytest.raises(ValidationError, match="cut the panel"):
        services.do_delete_rule(ssh, actor=admin_user)
    assert fw_server.firewall_rules.count() == 2


def test_unknown_panel_address_refuses_rules(db, admin_user):
    server = Server.objects.create(name="new", address="10.9.9.9", owner=admin_user)
    with pytest.raises(ValidationError, match="does not yet know its address"):
        services.do_save_rule(server, actor=admin_user, data={"position": 10, "port": 22})


class Forwarder:
    """A TCP port-forward on the panel's side (127.0.0.28:PORT -> the server's SSH)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.28", free_port("127.0.0.28")))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_guard_judges_by_what_the_server_sees_behind_a_port_forward(netns, admin_user):
    """The panel talks to 127.0.0.28:<port>, forwarded to 10.200.0.2:22. Rules that allow the
    panel's own socket address and port would lock it out; the guard sees 10.200.0.1 and 22,
    as the server does, refuses those and accepts the right ones, which keep SSH working."""
    fwd = Forwarder((HOST, 22))
    try:
        server = Server.objects.create(
            name="behind-nat",
            address="127.0.0.28",
            ssh_port=fwd.port,
            owner=admin_user,
            private_key=netns["sshd"].private_key,
            profile=profile(netns),
        )
        connection.open_transport(server, reuse=False).close()
        server.refresh_from_db()
        assert (server.panel_address, server.panel_ssh_port) == (PANEL, 22)
        with pytest.raises(ValidationError, match="cut the panel"):
            services.do_save_rule(
                server,
                actor=admin_user,
                data={"position": 10, "port": fwd.port, "source": "127.0.0.1/32"},
            )
        services.do_save_rule(
            server, actor=admin_user, data={"position": 10, "port": 22, "source": f"{PANEL}/32"}
        )
        result = apply(server)
        assert result.reloaded == ["nftables"] and not result.failed_units
        connection.open_transport(server, reuse=False).close()
    finally:
        fwd.close()


def test_rules_that_lock_the_panel_out_revert_themselves(netns, fw_server, monkeypatch):
    """Commit-confirm, the second line of defence: with the guard bypassed (as if it judged
    wrong), rules that shut SSH are loaded, a new SSH connection fails, and the server itself
    puts the previous rules back; the firewall unit is reported failed, SSH works again."""
    FirewallRule.objects.create(server=fw_server, position=10, port=22, source=f"{PANEL}/32")
    FirewallRule.objects.create(server=fw_server, position=20, port=8080)
    apply(fw_server)
    before = in_ns(netns, "nft", "list", "table", "inet", "hosting_panel").stdout
    assert "8080" in before
    FirewallRule.objects.filter(server=fw_server, port=22).update(source="10.200.0.77/32")
    monkeypatch.setattr(firewall, "lockout_problem", lambda server, rules: "")
    lines: list[str] = []
    result = apply(fw_server, lines)
    assert set(result.failed_units) == {"firewall"}
    assert "would cut the panel off" in result.failed_units["firewall"]
    assert in_ns(netns, "nft", "list", "table", "inet", "hosting_panel").stdout == before
    assert "10.200.0.77" not in Path(netns["base"], "hosting-panel.nft").read_text()
    connection.open_transport(fw_server, reuse=False).close()
    assert reachable(8080)


def test_deleting_every_rule_unloads_the_table(netns, fw_server):
    rule = FirewallRule.objects.create(server=fw_server, position=10, port=22, source=f"{PANEL}/32")
    apply(fw_server)
    assert "hosting_panel" in in_ns(netns, "nft", "list", "tables").stdout
    rule.delete()
    result = apply(fw_server)
    assert result.removed and result.reloaded == ["nftables"]
    assert "hosting_panel" not in in_ns(netns, "nft", "list", "tables").stdout


def test_invalid_ruleset_never_reaches_the_server(netns, fw_server):
    FirewallRule.objects.create(server=fw_server, position=10, port=22, source=f"{PANEL}/32")
    FirewallRule.objects.create(server=fw_server, position=20, port=8080, comment="x")
    # A value the validators would refuse, written past them, to prove nft -c guards the
    # live ruleset: the quote ends nft's string early and the rest is a syntax error.
    FirewallRule.objects.filter(comment="x").update(comment='x" oops')
    result = apply(fw_server)
    assert set(result.failed_units) == {"firewall"}
    assert "nft rejected the firewall rules" in result.failed_units["firewall"]
    assert not os.path.exists(f"{netns['base']}/hosting-panel.nft")
    assert "hosting_panel" not in in_ns(netns, "nft", "list", "tables").stdout


def test_a_bad_firewall_never_holds_back_sites(netns, fw_server, admin_user, tmp_path):
    """One service's failure fails only its own units."""
    from servers.engine import registry
    from servers.firewall import FirewallFiles
    from tests import support

    support.register_test_service()
    plain = support.PlainFiles()
    target = f"{netns['base']}/site.conf"
    plain.files_wanted = {"plain:site": (target, b"site\n", 0o644, "root")}
    FirewallRule.objects.create(server=fw_server, position=10, port=22, source=f"{PANEL}/32")
    FirewallRule.objects.create(server=fw_server, position=20, port=8080, comment="x")
    FirewallRule.objects.filter(comment="x").update(comment='x" oops')
    with registry.only_providers(plain, FirewallFiles()):
        result = apply(fw_server)
    assert set(result.failed_units) == {"firewall"} and "plain:site" in result.ok_units
    assert Path(target).read_text() == "site\n"


def test_guard_logic_without_network(db):
    server = Server(ssh_port=2222, panel_address="10.1.2.3", panel_ssh_port=2222)
    rules = [
        FirewallRule(position=5, action="deny", port=2222, source="10.0.0.0/8"),
        FirewallRule(position=9, port=2000, port_end=3000),
    ]
    assert not firewall.panel_reaches_ssh(rules, 2222, "10.1.2.3")
    assert firewall.panel_reaches_ssh(rules, 2222, "192.168.1.1")
    with pytest.raises(ValidationError):
        firewall.check_lockout(server, rules)
    text = firewall.render(rules)
    assert "ip saddr 10.0.0.0/8 tcp dport 2222 drop" in text
    assert "tcp dport 2000-3000 accept" in text and "policy drop" in text


def test_local_server_needs_no_address(db):
    server = Server(transport=Server.Transport.LOCAL, ssh_port=22)
    assert firewall.lockout_problem(server, [FirewallRule(position=1, port=80)]) == ""
