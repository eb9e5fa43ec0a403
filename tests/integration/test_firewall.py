"""Firewall rules applied with real nft inside a network namespace this test creates.

The "server" is an sshd running inside the namespace at 10.200.0.2; the panel reaches it over
a veth pair from 10.200.0.1. nft only ever runs inside that namespace (through that sshd).
"""

import os
import secrets
import shutil
import socket
import subprocess

import pytest
from django.core.exceptions import ValidationError

from servers import connection, firewall, services
from servers.apply import Engine
from servers.models import FirewallRule, Server
from tests.integration.conftest import need, start_sshd, stop_pidfile, wait_port, world_readable_tmp

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST, PANEL = "10.200.0.2", "10.200.0.1"


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


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
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", outer, check=False)
        shutil.rmtree(base, ignore_errors=True)


def reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def fw_server(netns, admin_user):
    server = Server.objects.create(
        name="fw1",
        address=HOST,
        ssh_port=22,
        owner=admin_user,
        private_key=netns["sshd"].private_key,
        profile={
            "nft_file": f"{netns['base']}/hosting-panel.nft",
            "state_dir": f"{netns['base']}/state",
        },
    )
    connection.open_transport(server, reuse=False).close()  # learns the panel's address
    server.refresh_from_db()
    return server


def apply(server):
    server.refresh_from_db()
    t = connection.open_transport(server, reuse=False)
    try:
        return Engine(server, t).apply()
    finally:
        t.close()


def test_rules_applied_inside_namespace(netns, fw_server, admin_user):
    assert fw_server.panel_address == PANEL
    root_tables_before = sh("nft", "list", "tables").stdout
    FirewallRule.objects.create(
        server=fw_server, position=10, port=22, source=f"{PANEL}/32", comment="panel ssh"
    )
    web = FirewallRule.objects.create(server=fw_server, position=20, port=8080)
    result = apply(fw_server)
    assert result.reloaded == ["nftables"]
    listed = sh(
        "ip", "netns", "exec", netns["ns"], "nft", "list", "table", "inet", "hosting_panel"
    ).stdout
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


def test_deleting_every_rule_unloads_the_table(netns, fw_server):
    rule = FirewallRule.objects.create(server=fw_server, position=10, port=22, source=f"{PANEL}/32")
    apply(fw_server)
    in_ns = ("ip", "netns", "exec", netns["ns"], "nft", "list", "tables")
    assert "hosting_panel" in sh(*in_ns).stdout
    rule.delete()
    result = apply(fw_server)
    assert result.removed and result.reloaded == ["nftables"]
    assert "hosting_panel" not in sh(*in_ns).stdout


def test_invalid_ruleset_never_reaches_the_server(netns, fw_server):
    FirewallRule.objects.create(server=fw_server, position=10, port=22, source=f"{PANEL}/32")
    FirewallRule.objects.create(server=fw_server, position=20, port=8080, comment="x")
    # A value the validators would refuse, written past them, to prove nft -c guards the
    # live ruleset: the quote ends nft's string early and the rest is a syntax error.
    FirewallRule.objects.filter(comment="x").update(comment='x" oops')
    from servers.apply import ApplyError

    with pytest.raises(ApplyError, match="nft rejected the firewall rules"):
        apply(fw_server)
    assert not os.path.exists(f"{netns['base']}/hosting-panel.nft")
    in_ns = ("ip", "netns", "exec", netns["ns"], "nft", "list", "tables")
    assert "hosting_panel" not in sh(*in_ns).stdout


def test_guard_logic_without_network(db):
    server = Server(ssh_port=2222)
    rules = [
        FirewallRule(position=5, action="deny", port=2222, source="10.0.0.0/8"),
        FirewallRule(position=9, port=2000, port_end=3000),
    ]
    assert not firewall.panel_reaches_ssh(rules, 2222, "10.1.2.3")
    assert firewall.panel_reaches_ssh(rules, 2222, "192.168.1.1")
    with pytest.raises(ValidationError):
        firewall.check_lockout(server, rules, "10.1.2.3")
    text = firewall.render(rules)
    assert "ip saddr 10.0.0.0/8 tcp dport 2222 drop" in text
    assert "tcp dport 2000-3000 accept" in text and "policy drop" in text
