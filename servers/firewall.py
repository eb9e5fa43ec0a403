"""Per-server firewall: rules rendered into one nftables table, applied by the engine.

The input chain drops by default; established traffic, loopback and ICMP pass, then the
rules in order. A rule set under which the panel itself could no longer reach the server's
SSH port is refused before anything is written.
"""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError

from servers.apply import ManagedFile
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


def check_lockout(server: Server, rules: list[FirewallRule], panel_address: str) -> None:
    if not rules:
        return  # no rules: the panel writes no ruleset at all
    if not panel_reaches_ssh(rules, server.ssh_port, panel_address):
        raise ValidationError(
            f"These rules would cut the panel ({panel_address}) off from SSH on port "
            f"{server.ssh_port}: allow TCP {server.ssh_port} from the panel's address first."
        )


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
    def files(self, server, profile):
        rules = list(server.firewall_rules.all())
        if not rules:
            return
        if server.panel_address:
            check_lockout(server, rules, server.panel_address)
        yield ManagedFile(
            path=profile.nft_file, content=render(rules).encode(), service="nftables", mode=0o600
        )

    def report(self, server, ok_units, failed_units) -> None:
        pass
