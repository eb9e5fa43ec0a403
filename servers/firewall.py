"""Per-server firewall: rules rendered into one nftables table, applied by the engine.

The input chain drops by default; established traffic, loopback and ICMP pass, then the
rules in order. A rule set under which the panel could no longer open an SSH connection is
refused before anything is written, judged by the address and port the server itself sees the
panel use ($SSH_CONNECTION, so NAT and port-forwards are accounted for); when those are not
known yet, rules are refused rather than guessed at. Loading is commit-confirmed besides
(servers/nftables.py).
"""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError

from servers.engine import ManagedFile, UnitFailed
from servers.models import FirewallRule, Server

TABLE = "hosting_panel"


def _matches(rule: FirewallRule, protocol: str, port: int, source: str) -> bool:
    if rule.protocol != protocol:
        return False
    if not rule.port <= port <= (rule.port_end or rule.port):
        return False
    if not rule.source:
        return True
    try:
        return ipaddress.ip_address(source) in ipaddress.ip_network(rule.source, strict=False)
    except ValueError:
        return False


def panel_reaches_ssh(rules: list[FirewallRule], ssh_port: int, panel_address: str) -> bool:
    """Would a new SSH connection from the panel be accepted? First matching rule decides."""
    for rule in sorted(rules, key=lambda r: (r.position, r.pk or 0)):
        if _matches(rule, "tcp", ssh_port, panel_address):
            return rule.action == FirewallRule.Action.ALLOW
    return False  # the chain's policy is drop


def lockout_problem(server: Server, rules: list[FirewallRule]) -> str:
    """Why these rules may not be loaded on ``server`` ("" when they may)."""
    if not rules or server.transport == Server.Transport.LOCAL:
        return ""  # no rules: no ruleset at all; local: the panel uses no SSH to get in
    if not server.panel_address:
        return (
            "The panel does not yet know its address as this server sees it: test the "
            "connection once, then add firewall rules."
        )
    port = server.panel_ssh_port or server.ssh_port
    if not panel_reaches_ssh(rules, port, server.panel_address):
        return (
            f"These rules would cut the panel ({server.panel_address}) off from SSH on port "
            f"{port}: allow TCP {port} from the panel's address first."
        )
    return ""


def check_lockout(server: Server, rules: list[FirewallRule]) -> None:
    problem = lockout_problem(server, rules)
    if problem:
        raise ValidationError(problem)


def render(rules: list[FirewallRule]) -> str:
    lines = [
        "# Managed by the hosting panel.",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy drop;",
        "    ct state established,related accept",
        "    ct state invalid drop",
        '    iifname "lo" accept',
        "    meta l4proto { icmp, ipv6-icmp } accept",
    ]
    for rule in sorted(rules, key=lambda r: (r.position, r.pk or 0)):
        match = []
        if rule.source:
            net = ipaddress.ip_network(rule.source, strict=False)
            match.append(f"{'ip' if net.version == 4 else 'ip6'} saddr {net}")
        ports = f"{rule.port}-{rule.port_end}" if rule.port_end else str(rule.port)
        match.append(f"{rule.protocol} dport {ports}")
        verdict = "accept" if rule.action == FirewallRule.Action.ALLOW else "drop"
        comment = f' comment "{rule.comment}"' if rule.comment else ""
        lines.append(f"    {' '.join(match)} {verdict}{comment}")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


class FirewallFiles:
    unit_prefix = UNIT = "firewall"
    profile_keys = ()

    def files(self, server, profile, units):
        rules = list(server.firewall_rules.all())
        if not rules:
            return
        problem = lockout_problem(server, rules)
        if problem:
            yield UnitFailed(self.UNIT, problem)
            return
        yield ManagedFile(
            path=profile.nft_file,
            content=render(rules).encode(),
            service="nftables",
            unit=self.UNIT,
            mode=0o600,
        )

    def report(self, server, ok, failed) -> None:
        pass  # the operation's log and summary carry a failed firewall unit
