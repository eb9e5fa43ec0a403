"""A private BIND 9.18 on loopback for publisher tests: one zone that takes TSIG-signed
dynamic updates (``update-policy { grant KEY zonesub ANY; }``) and transfers to the same
key, an rndc control channel (freeze/thaw), its own directory, config and pid file.

``locked.<zone>`` is denied to the key, so a test has a record BIND refuses (REFUSED).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.zone

from tests.integration.conftest import free_port, need

ZONE = "example.test."
KEY_NAME = "panel-key"


def _key_clause(name: str, secret: str) -> str:
    return f'key "{name}" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'


class Bind:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.host = "127.0.0.1"
        self.port = free_port()
        self.control_port = free_port()
        self.zone = dns.name.from_text(ZONE)
        self.key_name = KEY_NAME
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.conf = base / "named.conf"
        self.pidfile = base / "named.pid"
        self.log = base / "named.log"
        self.rndc_key = base / "rndc.key"

    def write_config(self) -> None:
        b = self.base
        (b / "panel.key").write_text(_key_clause(self.key_name, self.secret))
        self.rndc_key.write_text(
            _key_clause("rndc-key", base64.b64encode(secrets.token_bytes(32)).decode())
        )
        for f in ("panel.key", "rndc.key"):
            (b / f).chmod(0o600)
        (b / "zone.db").write_text(
            "$TTL 300\n"
            f"@ IN SOA ns1.example.net. hostmaster.{ZONE} 1 3600 600 86400 300\n"
            "@ IN NS ns1.example.net.\n"
        )
        self.conf.write_text(
            f'include "{b}/panel.key";\ninclude "{b}/rndc.key";\n'
            f'options {{ directory "{b}"; pid-file "{self.pidfile}";'
            f' session-keyfile "{b}/session.key"; listen-on port {self.port} {{ 127.0.0.1; }};'
            " listen-on-v6 { none; }; recursion no; dnssec-validation no; };\n"
            f"controls {{ inet 127.0.0.1 port {self.control_port} allow {{ 127.0.0.1; }}"
            ' keys { "rndc-key"; }; };\n'
            f'logging {{ channel main {{ file "{self.log}"; severity info; print-time yes; }};'
            " category default { main; }; category update { main; };"
            " category update-security { main; }; };\n"
            f'zone "{ZONE}" {{ type primary; file "{b}/zone.db";'
            f" update-policy {{ deny {KEY_NAME} name locked.{ZONE} ANY;"
            f" grant {KEY_NAME} zonesub ANY; }};"
            f" allow-transfer {{ key {KEY_NAME}; }}; }};\n"
        )
        subprocess.run(["named-checkconf", str(self.conf)], check=True, capture_output=True)

    # -- the daemon ------------------------------------------------------------------------
    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        # One worker thread: three sessions share two CPUs. named daemonises by itself.
        subprocess.run([need("named"), "-c", str(self.conf), "-4", "-n", "1"], check=True)
        self.wait(lambda: self.soa_serial() is not None, "named to serve the zone")

    def stop(self) -> None:
        """Stop named and wait until it is gone (its pid file removed, the port closed)."""
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(int(self.pidfile.read_text().strip()), signal.SIGTERM)
        self.wait(lambda: not self.pidfile.exists() and not self.answers(), "named to stop")

    @property
    def running(self) -> bool:
        return self.pidfile.exists()

    def rndc(self, *args: str) -> str:
        argv = [need("rndc"), "-k", str(self.rndc_key), "-s", "127.0.0.1"]
        argv += ["-p", str(self.control_port), *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def freeze(self) -> None:
        """Dynamic updates are refused (REFUSED) until thaw(); reads still work."""
        self.rndc("freeze", ZONE)

    def thaw(self) -> None:
        self.rndc("thaw", ZONE)
        self.wait(lambda: "frozen: no" in self.rndc("zonestatus", ZONE), "the zone to thaw")

    # -- looking at what it serves (independently of any publisher) -------------------------
    def keyring(self) -> dict:
        return dns.tsigkeyring.from_text({self.key_name: self.secret})

    def answers(self) -> bool:
        return self.soa_serial() is not None

    def soa_serial(self) -> int | None:
        q = dns.message.make_query(self.zone, dns.rdatatype.SOA)
        try:
            r = dns.query.tcp(q, self.host, port=self.port, timeout=1)
        except (OSError, EOFError, dns.exception.DNSException):
            return None
        rrset = r.get_rrset(r.answer, self.zone, dns.rdataclass.IN, dns.rdatatype.SOA)
        return rrset[0].serial if rrset else None

    def records(self) -> dict[str, set[str]]:
        """'name/TYPE' (relative) -> its records as text (with TTL), without SOA and the
        apex NS: what the zone serves, read by AXFR."""
        z = dns.zone.from_xfr(
            dns.query.xfr(
                self.host,
                self.zone,
                port=self.port,
                keyring=self.keyring(),
                keyname=self.key_name,
                keyalgorithm=dns.tsig.HMAC_SHA256,
                lifetime=5,
            )
        )
        out: dict[str, set[str]] = {}
        for name, rds in z.iterate_rdatasets():
            if rds.rdtype == dns.rdatatype.SOA or (
                rds.rdtype == dns.rdatatype.NS and name == dns.name.empty
            ):
                continue
            key = f"{name}/{dns.rdatatype.to_text(rds.rdtype)}"
            out[key] = {f"{rds.ttl} {r.to_text()}" for r in rds}
        return out

    @staticmethod
    def wait(check, what: str, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not check():
            if time.monotonic() > end:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.02)


def start_bind(base: Path) -> Bind:
    need("named")
    need("rndc")
    need("named-checkconf")
    bind = Bind(base)
    bind.write_config()
    bind.start()
    return bind


def remove(bind: Bind) -> None:
    if bind.running:
        bind.stop()
    shutil.rmtree(bind.base, ignore_errors=True)
