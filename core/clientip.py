"""The client's address, for HTTP requests and websockets alike.

Behind a reverse proxy the peer is the proxy. ``X-Forwarded-For`` is believed only when the
peer is in ``PANEL_TRUSTED_PROXIES``, and only as far as it is written by trusted proxies:
reading right to left, the first address that is not a trusted proxy is the client. A
malformed entry stops the walk (it could only come from the client itself).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

UNKNOWN = "0.0.0.0"  # noqa: S104 - a value for "no address", never bound


@lru_cache(maxsize=8)
def trusted_networks(networks: tuple[str, ...]):
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def parse_address(value: str):
    value = value.strip()
    if "%" in value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_ip(peer: str | None, forwarded_for: str | None) -> str:
    addr = parse_address(peer or "")
    if addr is None:
        return UNKNOWN
    trusted = trusted_networks(tuple(settings.TRUSTED_PROXIES))
    if not forwarded_for or not any(addr in net for net in trusted):
        return str(addr)
    for item in reversed(forwarded_for.split(",")):
        hop = parse_address(item)
        if hop is None:
            break
        addr = hop
        if not any(hop in net for net in trusted):
            break
    return str(addr)


def for_request(request) -> str:
    return client_ip(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def for_scope(scope) -> str:
    """The same answer for an ASGI scope (websockets)."""
    peer = (scope.get("client") or (None,))[0]
    headers = dict(scope.get("headers") or [])
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
    return client_ip(peer, forwarded)
