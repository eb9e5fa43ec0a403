"""The adapter to notification systems: email (Django's mail), webhooks (JSON signed with
HMAC-SHA256 over timestamp and body) and Telegram's Bot API. One error type, ``NotifyError``,
says whether a retry can help.

Webhook receivers check ``X-Panel-Signature: sha256=<hex>`` against
``HMAC-SHA256(secret, "<X-Panel-Timestamp>." + body)`` and refuse old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage

from core.policy import ADMIN, role_of


class NotifyError(Exception):
    def __init__(self, message: str, *, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class Notice:
    """What is said, whatever the channel."""

    event: str  # firing, resolved, test
    title: str
    text: str
    data: dict  # the webhook's JSON body
    # The delivery's id, the same on every attempt (X-Panel-Delivery). Not signed: receivers
    # deduplicate by a signed field of the body (an integrator event's ``id``).
    key: str = ""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --- privacy masking (Telegram: the text leaves for a third party) ---------------------

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])")
_DOMAIN = re.compile(
    r"(?<![\w.-])((?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+)([a-zA-Z]{2,63})(?![\w-])"
)


def _shorten(match: re.Match) -> str:
    labels = match.group(1).rstrip(".").split(".")
    return ".".join(label[0] + "…" for label in labels) + "." + match.group(2)


def mask(text: str) -> str:
    """Addresses become ``[address]``; every domain label but the last becomes its first
    letter (``shop.example.com`` → ``s….e….com``)."""
    text = _IPV4.sub("[address]", text)
    text = _IPV6.sub(lambda m: "[address]" if _is_ip(m.group(0)) else m.group(0), text)
    return _DOMAIN.sub(_shorten, text)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# --- where a user may send requests ----------------------------------------------------


def check_destination(url: str, owner, *, allow_private: bool = False) -> list[str]:
    """Resolve the URL's host once and return its addresses, which the caller must connect to
    (``connection``), so that a name answering differently a moment later (DNS rebinding)
    cannot move the request elsewhere. Non-administrators may only reach public addresses
    (else a webhook or check is a probe into the panel's own network); checked on every send.
    ``allow_private``: an administrator allowed this destination (integrators' webhooks)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyError("Only http:// and https:// URLs are allowed.", retryable=False)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise NotifyError(f"{parts.hostname} does not resolve: {exc}", retryable=True) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    # An allowance holds for an IP-literal host only: a name's DNS may be repointed later.
    if (allow_private and is_ip_literal(parts.hostname)) or role_of(owner) == ADMIN:
        return addresses
    for text in addresses:
        if not is_public_address(text):
            raise NotifyError(f"{parts.hostname} is not a public address.", retryable=False)
    return addresses


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` (a URL's hostname, IPv6 without brackets) is an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# IPv6 forms that carry an IPv4 address (which is what is then reached): NAT64's well-known
# prefix; 6to4 and IPv4-mapped are unwrapped by ipaddress itself.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")

# Not globally reachable by the IANA special-purpose address registries, yet ``is_global``
# on Python 3.11 (whose table predates them or leaves them out). Checked against
# https://www.iana.org/assignments/iana-ipv6-special-registry and iana-ipv4-special-registry
# (2026-11): every block there whose "Globally Reachable" is False or N/A is either here or
# already not ``is_global``. (Python is stricter than the registries on 2001::/23, e.g. the
# AS112 and PCP anycast blocks; that costs no integrator anything and stays.)
NOT_GLOBAL = tuple(
    ipaddress.ip_network(net)
    for net in (
        "64:ff9b:1::/48",  # NAT64 local-use prefix (RFC 8215): a site's own translator
        "100::/64",  # discard-only (RFC 6666)
        "100:0:0:1::/64",  # dummy IPv6 prefix (RFC 9780)
        "2001:db8::/32",  # documentation (RFC 3849)
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs (RFC 9602)
        "fc00::/7",  # unique local (RFC 4193)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local, deprecated (RFC 3879) but still routed inside sites
        "ff00::/8",  # multicast: never a webhook's receiver
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated (RFC 7526)
        "224.0.0.0/4",  # multicast (233.252.0.0/24 documentation among it)
    )
)


def _listed_global(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """``is_global``, and outside the registries' blocks Python 3.11 does not know."""
    if any(addr in net for net in NOT_GLOBAL if net.version == addr.version):
        return False
    return addr.is_global


def is_public_address(text: str) -> bool:
    """Whether ``text`` is a globally reachable address (``is_global`` and the IANA blocks
    in ``NOT_GLOBAL``), and so is any IPv4 address embedded in it (IPv4-mapped, 6to4,
    NAT64 64:ff9b::/96, IPv4-compatible ::a.b.c.d)."""
    addr = ipaddress.ip_address(text)
    if not _listed_global(addr):
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is None and (addr in _NAT64 or addr in _COMPAT):
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None and not _listed_global(embedded):
            return False
    return True


def open_socket(addresses: list[str], port: int, timeout: float | None, *args) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that accepts one."""
    error: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout, *args)
        except OSError as exc:
            error = exc
    raise error


def connection(
    url: str,
    *,
    timeout: float,
    addresses: list[str] | None = None,
    context: ssl.SSLContext | None = None,
) -> http.client.HTTPConnection:
    """An HTTP(S) connection for ``url`` whose socket goes to ``addresses`` when given (what
    ``check_destination`` resolved and approved) while the Host header, SNI and certificate
    check keep the URL's name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        context = context or ssl.create_default_context()
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, parts.port or 443, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
    if addresses is not None:
        pinned = list(addresses)

        def create(where, timeout=None, *args):
            return open_socket(pinned, where[1], timeout, *args)

        conn._create_connection = create  # http.client's own hook for opening the socket
    return conn


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# --- the three channels ------------------------------------------------------------------


def send_email(address: str, notice: Notice) -> int | None:
    message = EmailMessage(notice.title, notice.text, to=[address])
    try:
        message.send(fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        raise NotifyError(f"mail not accepted: {exc}", retryable=True) from exc
    return None


def send_webhook(
    url: str, secret: str, notice: Notice, owner, *, allow_private: bool = False
) -> int:
    addresses = check_destination(url, owner, allow_private=allow_private)
    body = json.dumps(notice.data, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "unified-hosting-panel",
        "X-Panel-Event": notice.event,
        "X-Panel-Timestamp": timestamp,
    }
    if notice.key:
        headers["X-Panel-Delivery"] = notice.key
    if secret:
        headers["X-Panel-Signature"] = sign(secret, timestamp, body)
    conn = connection(url, timeout=settings.PANEL_NOTIFY_TIMEOUT, addresses=addresses)
    try:
        conn.request("POST", path_of(url), body=body, headers=headers)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        what = exc.__class__.__name__
        raise NotifyError(f"cannot reach the receiver ({what}: {exc})", retryable=True) from None
    finally:
        conn.close()
    return _answered(status)


def send_telegram(chat_id: str, token: str, notice: Notice) -> int:
    base = settings.PANEL_TELEGRAM_API_URL.rstrip("/")
    body = json.dumps(
        {"chat_id": chat_id, "text": mask(notice.text), "disable_web_page_preview": True}
    ).encode()
    return _post(f"{base}/bot{token}/sendMessage", body, {"Content-Type": "application/json"})


def _post(url: str, body: bytes, headers: dict) -> int:
    try:
        response = requests.post(
            url,
            data=body,
            headers=headers,
            timeout=settings.PANEL_NOTIFY_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        # The URL may carry a bot token: say what failed without it.
        what = exc.__class__.__name__
        raise NotifyError(f"cannot reach the receiver ({what})", retryable=True) from None
    return _answered(response.status_code)


def _answered(status: int) -> int:
    if 200 <= status < 300:
        return status
    retryable = status >= 500 or status in (408, 429)
    raise NotifyError(f"the receiver answered {status}", retryable=retryable, status=status)
