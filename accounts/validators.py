"""Validators for values users type into security settings."""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError


def parse_cidrs(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parse comma/newline separated CIDRs; a ValidationError names the bad one."""
    networks = []
    for raw in text.replace(",", "\n").splitlines():
        item = raw.strip()
        if not item:
            continue
        # A zone id (fe80::1%eth0) names an interface, not a network anyone connects from.
        if "%" in item:
            raise ValidationError(f"{item!r} is not an IP address or CIDR network.")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValidationError(f"{item!r} is not an IP address or CIDR network.") from exc
    return networks


def validate_cidr_list(text: str) -> None:
    parse_cidrs(text)


def ip_allowed(ip: str, networks) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)
