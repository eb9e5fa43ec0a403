"""The adapter for uptime checks: one probe per kind (HTTP(S), TCP, DNS, ping), each
returning a ``ProbeResult`` (never raising for what the target does wrong).

HTTP(S) asks with ``http.client`` so the TLS certificate the server presented can be read
(days left); certificates are verified against the system's CAs, or
``PANEL_CHECKS_CA_FILE`` when set. Redirects are not followed (a 3xx is an answer).
Checks of non-administrators reach public addresses only (``notify.check_destination``).
"""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
from django.conf import settings

from monitoring.notify import NotifyError, check_destination, connection, open_socket, path_of

BODY_LIMIT = 1024 * 1024  # keywords are looked for in the first megabyte


@dataclass
class ProbeResult:
    ok: bool
    response_ms: float | None = None
    status_code: int | None = None
    error: str = ""
    tls_days_left: float | None = None


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def probe_http(
    url: str,
    *,
    timeout: float,
    keyword: str = "",
    expect_status: int | None = None,
    addresses: list[str] | None = None,
) -> ProbeResult:
    """``addresses``: connect there (what ``check_destination`` approved), not wherever
    the name resolves at connect time."""
    https = urlsplit(url).scheme == "https"
    path = path_of(url)
    started = time.monotonic()
    days_left = None
    context = None
    if https:
        context = ssl.create_default_context(cafile=settings.PANEL_CHECKS_CA_FILE or None)
    conn = connection(url, timeout=timeout, addresses=addresses, context=context)
    try:
        conn.request("GET", path, headers={"User-Agent": "unified-hosting-panel-check"})
        if https:
            cert = conn.sock.getpeercert()
            if cert and cert.get("notAfter"):
                not_after = ssl.cert_time_to_seconds(cert["notAfter"])
                days_left = round((not_after - time.time()) / 86400, 2)
        response = conn.getresponse()
        body = response.read(BODY_LIMIT) if keyword else b""
    except ssl.SSLCertVerificationError as exc:
        return ProbeResult(False, _ms(started), error=f"TLS certificate: {exc.verify_message}")
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, _ms(started), error=str(exc) or exc.__class__.__name__)
    finally:
        conn.close()
    elapsed, code = _ms(started), response.status
    result = ProbeResult(True, elapsed, code, tls_days_left=days_left)
    if expect_status is not None and code != expect_status:
        result.ok, result.error = False, f"answered {code}, expected {expect_status}"
    elif expect_status is None and code >= 400:
        result.ok, result.error = False, f"answered {code}"
    elif keyword and keyword.encode() not in body:
        result.ok, result.error = False, f"{keyword!r} is not on the page"
    return result


def probe_tcp(addresses: list[str], port: int, *, timeout: float) -> ProbeResult:
    started = time.monotonic()
    try:
        with open_socket(addresses, port, timeout):
            return ProbeResult(True, _ms(started))
    except OSError as exc:
        return ProbeResult(False, _ms(started), error=str(exc) or exc.__class__.__name__)


def probe_dns(
    name: str, rdtype: str, *, expected: str, server: str, port: int, timeout: float
) -> ProbeResult:
    """The answer must hold ``expected`` (one record's text, e.g. an address); without it,
    any answer will do."""
    resolver = dns.resolver.Resolver(configure=not server)
    if server:
        resolver.nameservers, resolver.port = [server], port
    started = time.monotonic()
    try:
        answer = resolver.resolve(name, rdtype, lifetime=timeout)
    except dns.exception.DNSException as exc:
        return ProbeResult(False, _ms(started), error=str(exc) or exc.__class__.__name__)
    found = {r.to_text().rstrip(".").lower() for r in answer}
    if expected and expected.rstrip(".").lower() not in found:
        shown = ", ".join(sorted(found))[:200]
        return ProbeResult(False, _ms(started), error=f"answer is {shown}, not {expected}")
    return ProbeResult(True, _ms(started))


def probe_ping(host: str, *, timeout: float) -> ProbeResult:
    ping = shutil.which("ping")
    if ping is None:
        return ProbeResult(False, error="ping is not installed on the panel's host")
    started = time.monotonic()
    wait = str(max(1, int(timeout)))
    try:
        done = subprocess.run(
            [ping, "-n", "-q", "-c", "1", "-W", wait, "--", host],
            capture_output=True,
            text=True,
            timeout=timeout + 2,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(False, _ms(started), error="no answer")
    if done.returncode != 0:
        # ping's own words: an error on stderr ("Network is unreachable"), else its summary
        # ("1 packets transmitted, 0 received, 100% packet loss").
        said = done.stderr.strip().splitlines() or [
            line for line in done.stdout.splitlines() if "transmitted" in line
        ]
        return ProbeResult(False, _ms(started), error=(said[-1] if said else "no answer")[:200])
    return ProbeResult(True, _ms(started))


def _url(host: str, port: int | None) -> str:
    """A URL naming ``host`` (IPv6 literals in brackets), for ``check_destination``."""
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/" if port else f"http://{name}/"


def run_probe(check, *, owner) -> ProbeResult:
    """The probe of one ``Check`` row (destination rules of its owner applied first)."""
    timeout = float(check.timeout)
    try:
        # Every probe goes to the address that was checked, not to a second resolution.
        if check.kind == "http":
            return probe_http(
                check.target,
                timeout=timeout,
                keyword=check.keyword,
                expect_status=check.expect_status,
                addresses=check_destination(check.target, owner),
            )
        host, port = check.host_port()
        if check.kind == "tcp":
            addresses = check_destination(_url(host, port), owner)
            return probe_tcp(addresses, port, timeout=timeout)
        if check.kind == "dns":
            if check.dns_server:
                server, server_port = check.dns_server_port()
                server = check_destination(_url(server, server_port), owner)[0]
            else:
                server, server_port = "", 53
            return probe_dns(
                check.target,
                check.dns_type,
                expected=check.expected,
                server=server,
                port=server_port,
                timeout=timeout,
            )
        return probe_ping(check_destination(_url(host, None), owner)[0], timeout=timeout)
    except NotifyError as exc:
        return ProbeResult(False, error=str(exc))
