"""Strict patterns for every name that reaches a command or a config file on a server.

Patterns are matched whole with ``fullmatch`` (``$`` would let a trailing newline through) and
addresses are parsed by ``ipaddress``; IPv6 zone ids (``fe80::1%eth0``) are refused, since they
name an interface of the panel's host rather than an address.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from django.core.exceptions import ValidationError

HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*"
)
UNIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}")
ABS_PATH = re.compile(r"/[A-Za-z0-9._/-]*")


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``value`` spells exactly, or None (zone ids and padding refused)."""
    if not isinstance(value, str) or "%" in value or value != value.strip():
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _numeric_host(value: str) -> bool:
    """Names the C resolver reads as IPv4 addresses (127.1, 2130706433, 0x7f.0.0.1)."""
    try:
        socket.inet_aton(value)
    except OSError:
        return False
    return True


def validate_address(value: str) -> None:
    if parse_ip(value) is not None:
        return
    if not HOSTNAME.fullmatch(value) or _numeric_host(value):
        raise ValidationError(f"{value!r} is neither an IP address nor a valid host name.")


def validate_unix_user(value: str) -> None:
    if not UNIX_USER.fullmatch(value):
        raise ValidationError(
            "Use a lowercase Unix user name: letters, digits, '_' or '-', at most 32 characters."
        )


def validate_server_name(value: str) -> None:
    if not SERVER_NAME.fullmatch(value):
        raise ValidationError(
            "Start with a letter or digit; then letters, digits, spaces, '.', '_' or '-'."
        )


def validate_abs_path(value: str) -> None:
    if not ABS_PATH.fullmatch(value) or "/../" in f"{value}/" or "//" in value:
        raise ValidationError(f"{value!r} is not a plain absolute path.")


def validate_cidr(value: str) -> None:
    """An address or network in its plain written form, e.g. 10.0.0.0/8 or 2001:db8::/32."""
    message = f"{value!r} is not an IP address or CIDR network."
    if not isinstance(value, str) or "%" in value or value != value.strip():
        raise ValidationError(message)
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValidationError(message) from exc
