"""Strict checks for every value a website puts into an nginx configuration.

Patterns are matched whole (``fullmatch``; ``$`` would let a trailing newline through),
addresses are parsed by ``ipaddress``. Each value that reaches a vhost is checked here or in
``websites.options`` / ``websites.directives``; nothing accepted can add a line, a block or an
argument.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from servers.validators import validate_address

DOMAIN = re.compile(
    r"(?=.{1,253}\Z)((?!-)[a-z0-9-]{1,63}(?<!-)\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59}(?<!-))"
)
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
# Printable ASCII without the characters nginx gives a meaning inside a quoted argument:
# the quote itself, the escape character and the variable sign.
HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,1024}")
HEADER_VALUE_REFUSED = set('"\\$')
# Headers nginx, HTTP itself or the panel's probe own.
RESERVED_HEADERS = {
    "connection",
    "content-length",
    "content-type",
    "date",
    "keep-alive",
    "location",
    "proxy-connection",
    "server",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
URL_PATH = re.compile(r"/[A-Za-z0-9._~/-]{0,200}")
UPSTREAM_PATH = re.compile(r"(/[A-Za-z0-9._~/-]{0,200})?")
IPV4_TRANSLATED = ipaddress.ip_network("64:ff9b::/96")
# Basic-auth user names: no ':' (the password file's separator), nothing nginx or a shell reads.
AUTH_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
# bcrypt as libxcrypt's crypt(3) reads it (nginx checks passwords with the system crypt).
BCRYPT_HASH = re.compile(r"\$2[by]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def validate_domain(value: str) -> None:
    if not isinstance(value, str) or not DOMAIN.fullmatch(value):
        raise ValidationError(f"{value!r} is not a valid lowercase domain name.")


def validate_domain_list(value: str) -> None:
    for item in value.split():
        validate_domain(item)


def validate_header_name(value: str) -> None:
    if not isinstance(value, str) or not HEADER_NAME.fullmatch(value):
        raise ValidationError(
            f"{value!r} is not a header name: letters, digits and '-', at most 64 characters."
        )
    lowered = value.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith("x-panel-"):
        raise ValidationError(f"The {value} header is set by the server, not by sites.")


def validate_header_value(value: str) -> None:
    if not isinstance(value, str) or not HEADER_VALUE.fullmatch(value):
        raise ValidationError(
            "A header value is 1 to 1,024 printable ASCII characters on one line."
        )
    if HEADER_VALUE_REFUSED & set(value):
        raise ValidationError('A header value cannot contain ", \\ or $.')
    if value != value.strip():
        raise ValidationError("A header value cannot start or end with a space.")


def validate_auth_user(value: str) -> None:
    if not isinstance(value, str) or not AUTH_USER.fullmatch(value):
        raise ValidationError(
            f"{value!r} is not a user name: letters, digits and . _ - (not first), at most 32."
        )


def validate_bcrypt_hash(value: str) -> None:
    if not isinstance(value, str) or not BCRYPT_HASH.fullmatch(value):
        raise ValidationError("The password hash is not a bcrypt hash.")


def validate_url_path(value: str) -> None:
    """A path on the site, as nginx matches it: plain characters, no dot segments."""
    if not isinstance(value, str) or not URL_PATH.fullmatch(value):
        raise ValidationError(
            f"{value!r} is not a plain path: start with '/', then letters, digits and . _ ~ / -"
        )
    if "//" in value or any(part in (".", "..") for part in value.split("/")):
        raise ValidationError(f"{value!r} cannot contain '//', '.' or '..' segments.")


def public_address_problem(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why an upstream at ``addr`` would reach something private ("" when it is public)."""
    from servers.addresses import panel_networks

    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        elif addr in IPV4_TRANSLATED:  # NAT64: the IPv4 address is in the last 32 bits
            addr = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    for flag, what in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "the unspecified address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(addr, flag):
            return what
    if not addr.is_global:
        return "not a public address"
    if any(addr in net for net in panel_networks()):
        return "on the panel's own network"
    return ""


def parse_upstream_url(
    value: str, *, schemes: tuple[str, ...] = ("http", "https")
) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of an upstream URL written plainly, or a ValidationError.

    No user info, query, fragment, percent-escapes or variables: what nginx connects to is
    exactly what was checked.
    """
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9.:/\[\]_~-]{1,300}", value):
        raise ValidationError(f"{value!r} is not a plain URL.")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValidationError(
            f"{value!r} must start with {' or '.join(s + '://' for s in schemes)}."
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"{value!r} has an invalid port.") from exc
    host = parts.hostname or ""
    if parts.netloc.endswith(":") or (port is not None and not 1 <= port <= 65535) or port == 0:
        raise ValidationError(f"{value!r} has an invalid port.")
    if not UPSTREAM_PATH.fullmatch(parts.path) or "//" in parts.path:
        raise ValidationError(f"{value!r}: the path is not plain.")
    return parts.scheme, host, port, parts.path


def upstream_host_problem(host: str, *, hostnames: bool, refused: frozenset[str]) -> str:
    """Why nginx must not connect to ``host`` ("" when it may). ``hostnames`` allows names
    (resolved by nginx, so not checked: for administrators' proxies only)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if addr is None:
        try:
            validate_address(host)  # refuses names the resolver reads as numbers (127.1)
        except ValidationError:
            return f"{host} is not an IP address nginx reads the same way, nor a host name"
        if not hostnames:
            return (
                f"{host} is a host name: give the upstream's public IP address (a name could "
                "resolve to a private one)"
            )
        return ""
    if str(addr) in refused:
        return f"{addr} is this site's own server"
    problem = public_address_problem(addr)
    return f"{addr} is {problem}" if problem else ""


def validate_nginx_directives(value: str) -> None:
    """Raw directives, checked without the site (migration 0001 names this validator): they
    parse, stay inside the site's server block and use only allowed directives. The checks that
    need the site (paths, upstreams, clashes with its options) run in ``Website.clean``."""
    from websites.directives import check_directives

    check_directives(value, None)


def validate_site_options(value) -> None:
    """Options checked without the site (the model field's validator); ``Website.clean``
    checks them against the site's names and server."""
    from websites.options import parse_options

    parse_options(value)
