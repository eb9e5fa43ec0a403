"""Private nameservers for the DNS app's tests, on loopback ports of their own:

- BIND 9.18 (tests/integration/bind.py's, plus ``allow-new-zones yes`` so ``rndc addzone``
  creates zones at run time, and a zone file directory the panel writes first files to);
- PowerDNS 4.7 with the gsqlite3 backend and its HTTP API (``daemon=no``, stopped by pid).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.zone

from tests.integration.bind import Bind
from tests.integration.conftest import free_port, need, wait_port

PDNS_SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


class PanelBind(Bind):
    def write_config(self) -> None:
        super().write_config()
        self.zone_dir = self.base / "zones"
        self.zone_dir.mkdir()
        text = self.conf.read_text().replace("recursion no;", "recursion no; allow-new-zones yes;")
        self.conf.write_text(text)
        subprocess.run(["named-checkconf", str(self.conf)], check=True, capture_output=True)

    @property
    def rndc_secret(self) -> str:
        text = self.rndc_key.read_text()
        return text.split('secret "', 1)[1].split('"', 1)[0]


def start_panel_bind(base: Path) -> PanelBind:
    need("named")
    need("rndc")
    need("named-checkconf")
    bind = PanelBind(base)
    bind.write_config()
    bind.start()
    return bind


class PowerDns:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.host = "127.0.0.1"
        self.port = free_port()
        self.api_port = free_port()
        self.api_key = base64.b64encode(secrets.token_bytes(18)).decode()
        self.db = base / "pdns.sqlite3"
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def start(self) -> None:
        with sqlite3.connect(self.db) as db:
            db.executescript(PDNS_SCHEMA.read_text())
        conf = self.base / "pdns.conf"
        conf.write_text(
            "\n".join(
                [
                    "launch=gsqlite3",
                    f"gsqlite3-database={self.db}",
                    "gsqlite3-dnssec=yes",  # the panel signs zones through cryptokeys
                    f"local-address={self.host}",
                    f"local-port={self.port}",
                    "api=yes",
                    f"api-key={self.api_key}",
                    "webserver=yes",
                    f"webserver-address={self.host}",
                    f"webserver-port={self.api_port}",
                    "webserver-allow-from=127.0.0.0/8",
                    "daemon=no",
                    "guardian=no",
                    "disable-syslog=yes",
                    "security-poll-suffix=",
                    f"socket-dir={self.base}",
                    "default-soa-content=ns1.example.net. hostmaster.@ 0 10800 3600 604800 3600",
                    "allow-axfr-ips=127.0.0.0/8",
                    "disable-axfr=no",
                    "distributor-threads=1",
                    "receiver-threads=1",
                    "",
                ]
            )
        )
        log = open(self.base / "pdns.log", "wb")  # noqa: SIM115 - the daemon keeps it
        self.proc = subprocess.Popen(
            [need("pdns_server"), f"--config-dir={self.base}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.host, self.api_port, timeout=20)
        wait_port(self.host, self.port, timeout=20)
        end = time.monotonic() + 20
        while True:
            try:
                req = urllib.request.Request(f"{self.api_url}/api/v1/servers/localhost")
                req.add_header("X-API-Key", self.api_key)
                urllib.request.urlopen(req, timeout=2).read()  # noqa: S310 - loopback http
                return
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_powerdns(base: Path) -> PowerDns:
    need("pdns_server")
    if not PDNS_SCHEMA.exists():
        from tests.conftest import require_real

        require_real("pdns-backend-sqlite3 is not installed")
    server = PowerDns(base)
    server.start()
    return server


def remove_powerdns(server: PowerDns) -> None:
    server.stop()
    shutil.rmtree(server.base, ignore_errors=True)


# -- what a server serves, read independently of the panel --------------------------------------
def axfr(host: str, port: int, zone: str, **tsig) -> dict[str, set[str]]:
    """'name TYPE' -> {'TTL content'} by zone transfer, without SOA and apex NS."""
    z = dns.zone.from_xfr(dns.query.xfr(host, zone + ".", port=port, lifetime=10, **tsig))
    out: dict[str, set[str]] = {}
    for name, rds in z.iterate_rdatasets():
        rdtype = dns.rdatatype.to_text(rds.rdtype)
        if rdtype == "SOA" or (rdtype == "NS" and str(name) == "@"):
            continue
        out[f"{name} {rdtype}"] = {
            f"{rds.ttl} {r.to_text(origin=z.origin, relativize=False)}" for r in rds
        }
    return out


def ask(host: str, port: int, qname: str, rdtype: str):
    q = dns.message.make_query(qname, rdtype)
    r = dns.query.tcp(q, host, port=port, timeout=3)
    return r.get_rrset(r.answer, dns.name.from_text(qname), dns.rdataclass.IN, rdtype)
