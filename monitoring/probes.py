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
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
from django.conf import settings

from monitoring.notify import NotifyError, check_destination

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
    url: str, *, timeout: float, keyword: str = "", expect_status: int | None = None
) -> ProbeResult:
    parts = urlsplit(url)
    host, https = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    days_left = None
    if https:
        context = ssl.create_default_context(cafile=settings.PANEL_CHECKS_CA_FILE or None)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
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


def probe_tcp(host: str, port: int, *, timeout: float) -> ProbeResult:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
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


def run_probe(check, *, owner) -> ProbeResult:
    """The probe of one ``Check`` row (destination rules of its owner applied first)."""
    timeout = float(check.timeout)
    try:
        if check.kind == "http":
            check_destination(check.target, owner)
            return probe_http(
                check.target,
                timeout=timeout,
                keyword=check.keyword,
                expect_status=check.expect_status,
            )
        host, port = check.host_port()
        if check.kind != "dns":
            check_destination(f"http://{host}:{port or 80}/", owner)
        if check.kind == "tcp":
            return probe_tcp(host, port, timeout=timeout)
        if check.kind == "dns":
            if check.dns_server:
                server, server_port = check.dns_server_port()
                check_destination(f"http://{server}:{server_port}/", owner)
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
        return probe_ping(host, timeout=timeout)
    except NotifyError as exc:
        return ProbeResult(False, error=str(exc))
