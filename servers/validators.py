"""Strict patterns for every name that reaches a command or a config file on a server."""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$"
)
UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$")
ABS_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")


def validate_address(value: str) -> None:
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    if not HOSTNAME.match(value):
        raise ValidationError(f"{value!r} is neither an IP address nor a valid host name.")


def validate_unix_user(value: str) -> None:
    if not UNIX_USER.match(value):
        raise ValidationError(
            "Use a lowercase Unix user name: letters, digits, '_' or '-', at most 32 characters."
        )


def validate_server_name(value: str) -> None:
    if not SERVER_NAME.match(value):
        raise ValidationError(
            "Start with a letter or digit; then letters, digits, spaces, '.', '_' or '-'."
        )


def validate_abs_path(value: str) -> None:
    if not ABS_PATH.match(value) or "/../" in f"{value}/" or "//" in value:
        raise ValidationError(f"{value!r} is not a plain absolute path.")


def validate_cidr(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValidationError(f"{value!r} is not an IP address or CIDR network.") from exc
