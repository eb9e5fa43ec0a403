"""Which addresses a user may put a server at.

Administrators may use any address or host name. Everyone else gives an IP address (a host
name could later resolve somewhere else) inside ``PANEL_SERVER_NETWORKS`` (default: public
addresses only), and never loopback, link-local, multicast, unspecified or reserved
addresses, nor a network of the panel's own host: otherwise the panel's SSH client becomes a
probe into the panel's own network.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError

from core.policy import ADMIN, role_of
from servers.validators import parse_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1)
def panel_networks() -> tuple[Network, ...]:
    """Networks of the panel host's own interfaces (read once per process)."""
    found: list[Network] = [
        ipaddress.ip_network(n, strict=False) for n in settings.PANEL_OWN_NETWORKS
    ]
    ip = shutil.which("ip")
    if ip:
        try:
            out = subprocess.run(
                [ip, "-j", "address"], capture_output=True, text=True, timeout=5, check=False
            ).stdout
            for link in json.loads(out or "[]"):
                for addr in link.get("addr_info", []):
                    found.append(
                        ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
                    )
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
            pass
    return tuple(found)


def _refused(addr) -> str | None:
    if getattr(addr, "ipv4_mapped", None):
        addr = addr.ipv4_mapped
    for flag, what in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "the unspecified address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(addr, flag):
            return what
    if any(addr in net for net in panel_networks()):
        return "on the panel's own network"
    allowed = [ipaddress.ip_network(n, strict=False) for n in settings.PANEL_SERVER_NETWORKS]
    if allowed:
        if not any(addr in net for net in allowed):
            return "outside the networks servers may be added in"
    elif not addr.is_global:
        return "not a public address"
    return None


def check_server_address(actor, address: str) -> None:
    """Refuse, as a field error, an address ``actor`` may not point the panel at."""
    if role_of(actor) == ADMIN or actor is None:
        return
    addr = parse_ip(address)
    if addr is None:
        raise ValidationError(
            {"address": "Give the server's IP address; host names are for administrators."}
        )
    reason = _refused(addr)
    if reason:
        raise ValidationError({"address": f"{address} is {reason}; choose another address."})
