"""Real ACME in tests: a private Pebble (Let's Encrypt's test CA) and a tiny DNS stand-in
that tells Pebble's validator (and the panel's "does it point here" check) where names live.
Pebble then fetches http://NAME:httpPort/.well-known/acme-challenge/TOKEN for real."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port(host: str = "127.0.0.1", kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class DnsStandIn:
    """Answers A queries from ``records`` (name -> IPv4), NXDOMAIN for other names, and an
    empty answer for other types of known names. UDP and TCP on 127.0.0.1."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        # One port free for both UDP and TCP: a UDP port that is free may be taken for TCP
        # by another test running in parallel, so try again until both bind.
        for _attempt in range(50):
            self.port = free_port(kind=socket.SOCK_DGRAM)
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", self.port))
            self.tcp = socket.socket()
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.tcp.listen(8)
        self.stopped = False
        for target in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        reply = dns.message.make_response(query)
        q = query.question[0]
        name = q.name.to_text().rstrip(".").lower()
        if name not in self.records:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif q.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", self.records[name]))
        return reply.to_wire()

    def _serve_udp(self) -> None:
        while not self.stopped:
            try:
                wire, peer = self.udp.recvfrom(4096)
                self.udp.sendto(self.answer(wire), peer)
            except OSError:
                return
            except Exception:  # noqa: BLE001, S112 - a malformed query is dropped
                continue

    def _serve_tcp(self) -> None:
        while not self.stopped:
            try:
                conn, _peer = self.tcp.accept()
            except OSError:
                return
            with conn, contextlib.suppress(Exception):
                size = int.from_bytes(conn.recv(2), "big")
                wire = b""
                while len(wire) < size:
                    wire += conn.recv(size - len(wire))
                out = self.answer(wire)
                conn.sendall(len(out).to_bytes(2, "big") + out)

    def stop(self) -> None:
        self.stopped = True
        self.udp.close()
        self.tcp.close()


def self_signed(path: Path, names: list[str], key=None) -> tuple[Path, Path]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    alt = [
        x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
        for n in names
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, keyfile = path.with_suffix(".crt"), path.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, keyfile


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class Pebble:
    def __init__(self, base: Path, http_port: int, dns: DnsStandIn) -> None:
        self.base = base
        self.port, self.mgmt = free_port(), free_port()
        self.cert, key = self_signed(base / "pebble", ["127.0.0.1", "localhost"])
        (base / "pebble.json").write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{self.port}",
                        "managementListenAddress": f"127.0.0.1:{self.mgmt}",
                        "certificate": str(self.cert),
                        "privateKey": str(key),
                        "httpPort": http_port,
                        "tlsPort": free_port(),
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        self.log = open(base / "pebble.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603 - the test's own program
            ["pebble", "-config", str(base / "pebble.json"), "-dnsserver", dns.address],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if _listens(self.port) and _listens(self.mgmt):
                return
            time.sleep(0.05)
        raise RuntimeError(f"pebble did not start: {(base / 'pebble.log').read_text()}")

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def root_pem(self) -> str:
        """Pebble makes a new root at every start: fetch it from the management API."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        url = f"https://127.0.0.1:{self.mgmt}/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:  # noqa: S310
            return resp.read().decode()

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.log.close()


def https_peer(port: int, name: str, root_pem: str, path: str = "/") -> tuple[bytes, str]:
    """The DER certificate an HTTPS server on 127.0.0.1:port presents for ``name``, verified
    against ``root_pem`` and the name, and the body it serves at ``path``."""
    ctx = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return der, data.decode(errors="replace").split("\r\n\r\n", 1)[-1]
