"""Adapters for the nameservers the panel publishes to, one per kind, each raising
``DnsError`` (an ``ApplyError``: ``retryable`` says whether trying again can help) with the
server's own words and never a secret.

- ``Bind``: RFC 2136 dynamic updates signed with TSIG (dnspython), zone transfers for reads,
  ``rndc addzone``/``delzone`` to create and remove zones. Any RFC 2136 server takes the
  updates; ``rndc`` is BIND's.
- ``PowerDns``: its HTTP API (``/api/v1/servers/localhost/zones``), one PATCH per change.

Both answer DNS queries, which is how a publish verifies what is really served.

A record set is keyed ``(name, TYPE)`` with ``name`` relative to the zone (``@`` the apex);
its state is an ``RRState`` (TTL and canonical record texts with absolute names).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.zone
from servers.engine.contracts import ApplyError

Key = tuple[str, str]  # (relative name, TYPE)
# Record types that belong to the zone itself or to DNSSEC signing: never record sets.
ZONE_OWN = {"SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY", "ZONEMD"}
# Answers to an UPDATE one record set can cause (bisection finds it); others refuse it all.
UNIT_RCODES = {
    dns.rcode.REFUSED,
    dns.rcode.YXDOMAIN,
    dns.rcode.NXDOMAIN,
    dns.rcode.YXRRSET,
    dns.rcode.NXRRSET,
    dns.rcode.NOTZONE,
}
STALE_RCODES = {dns.rcode.YXRRSET, dns.rcode.NXRRSET}
STALE = "changed on the nameserver since the panel last published it"
QUERY_LIMIT = 50  # above this many record sets, read the whole zone rather than ask each


class DnsError(ApplyError):
    """A nameserver could not be reached or refused a request."""


class NothingApplied(DnsError):
    """The server applied none of the request (unreachable, a bad key, the whole message
    refused): nothing to take back."""


def words(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__


@dataclass(frozen=True)
class RRState:
    ttl: int
    records: frozenset[str]

    def __str__(self) -> str:
        return f"{', '.join(sorted(self.records))} (TTL {self.ttl})"


@dataclass(frozen=True)
class ZoneState:
    """The zone itself: its SOA (serial included) and apex NS names."""

    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int
    ttl: int
    nameservers: tuple[str, ...]

    def soa_text(self) -> str:
        return (
            f"{self.mname} {self.rname} {self.serial} {self.refresh} {self.retry} "
            f"{self.expire} {self.minimum}"
        )

    def __str__(self) -> str:
        return f"SOA serial {self.serial}, NS {', '.join(self.nameservers)}"


def absolute(origin: dns.name.Name, name: str) -> dns.name.Name:
    return origin if name == "@" else dns.name.from_text(name, origin=origin)


def relative(origin: dns.name.Name, name: dns.name.Name) -> str:
    return "@" if name == origin else name.relativize(origin).to_text()


def rdatas(origin: dns.name.Name, rdtype: str, state: RRState) -> list[dns.rdata.Rdata]:
    kind = dns.rdatatype.from_text(rdtype)
    return [
        dns.rdata.from_text(dns.rdataclass.IN, kind, t, origin=origin, relativize=False)
        for t in sorted(state.records)
    ]


def state_of(rds) -> RRState:
    return RRState(rds.ttl, frozenset(r.to_text(origin=None, relativize=False) for r in rds))


def zone_state_of(soa_rds, ns_rds) -> ZoneState | None:
    if soa_rds is None:
        return None
    soa = soa_rds[0]
    names = tuple(sorted(r.target.to_text() for r in ns_rds)) if ns_rds is not None else ()
    return ZoneState(
        soa.mname.to_text(),
        soa.rname.to_text(),
        soa.serial,
        soa.refresh,
        soa.retry,
        soa.expire,
        soa.minimum,
        soa_rds.ttl,
        names,
    )


@dataclass(frozen=True)
class Change:
    key: Key
    before: RRState | None
    after: RRState | None


class Adapter:
    """What the publisher asks of a nameserver."""

    batch = 200  # record sets per update request

    def __init__(self, ns) -> None:
        self.ns = ns
        self.sent: list[str] = []  # what went out, for tests and benchmarks

    def __str__(self) -> str:
        return f"{self.ns.hostname} ({self.ns.host}:{self.ns.port})"

    # -- DNS queries (both kinds) -------------------------------------------------------------
    def query(self, zone: str, name: str, rdtype: str):
        """The record set as the server answers it (authoritatively), or None."""
        origin = dns.name.from_text(zone + ".")
        qname = absolute(origin, name)
        q = dns.message.make_query(qname, rdtype)
        q.flags &= ~dns.flags.RD
        try:
            answer = dns.query.tcp(q, self.ns.host, port=self.ns.port, timeout=3)
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            raise DnsError(
                f"asking {self} for {qname} {rdtype}: {words(exc)}", retryable=True
            ) from exc
        rcode = answer.rcode()
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            return None  # not a zone it serves
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise DnsError(
                f"{self} answered {dns.rcode.to_text(rcode)} for {qname} {rdtype}", retryable=True
            )
        kind = dns.rdatatype.from_text(rdtype)
        found = answer.get_rrset(answer.answer, qname, dns.rdataclass.IN, kind)
        if found is None and kind == dns.rdatatype.NS:  # a delegation answers by referral
            found = answer.get_rrset(answer.authority, qname, dns.rdataclass.IN, kind)
        return found

    def zone_state(self, zone: str) -> ZoneState | None:
        soa = self.query(zone, "@", "SOA")
        if soa is None:
            return None
        return zone_state_of(soa, self.query(zone, "@", "NS"))

    def signed(self, zone: str) -> bool:
        """Does the server answer the zone's SOA with a signature (asked with DO)?"""
        origin = dns.name.from_text(zone + ".")
        q = dns.message.make_query(origin, "SOA", want_dnssec=True)
        q.flags &= ~dns.flags.RD
        try:
            answer = dns.query.tcp(q, self.ns.host, port=self.ns.port, timeout=3)
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            raise DnsError(f"asking {self} for {zone} SOA: {words(exc)}", retryable=True) from exc
        return any(r.rdtype == dns.rdatatype.RRSIG for r in answer.answer)

    def set_signing(self, zone: str, signed: bool) -> None:
        """Sign the zone (``signed``) or serve it unsigned again."""
        raise NotImplementedError

    def served(self, zone: str, keys: Iterable[Key]) -> dict[Key, RRState]:
        out = {}
        for name, rdtype in keys:
            rrset = self.query(zone, name, rdtype)
            if rrset is not None and rrset.rdtype == dns.rdatatype.from_text(rdtype):
                out[(name, rdtype)] = state_of(rrset)
        return out

    # -- the kind's own ------------------------------------------------------------------------
    def zone_exists(self, zone: str) -> bool:
        raise NotImplementedError

    def read_zone(self, zone: str) -> tuple[ZoneState | None, dict[Key, RRState]]:
        """Every record set the server has for the zone (one transfer or one API call)."""
        raise NotImplementedError

    def create_zone(
        self, zone: str, state: ZoneState, records: dict[Key, RRState] | None = None
    ) -> None:
        """Create the zone serving ``state`` and, in the same step, ``records``: a new zone
        arrives whole, at exactly its serial (BIND counts every later UPDATE message)."""
        raise NotImplementedError

    def delete_zone(self, zone: str) -> None:
        raise NotImplementedError

    def update(self, zone: str, soa: ZoneState | None, changes: list[Change], *, checked: bool):
        """Send record set changes (and the new SOA) as one request. ``checked``: refuse
        the request if any record set no longer serves its ``before``. Returns None when
        applied, the server's words when one record set can be to blame; raises
        NothingApplied when none of it applied for a reason of the whole request."""
        raise NotImplementedError


class Bind(Adapter):
    @property
    def keyring(self):
        return dns.tsigkeyring.from_text({self.ns.tsig_key_name: self.ns.tsig_secret})

    def zone_exists(self, zone: str) -> bool:
        return self.zone_state(zone) is not None

    def read_zone(self, zone: str):
        origin = dns.name.from_text(zone + ".")
        self.sent.append("axfr")
        try:
            z = dns.zone.from_xfr(
                dns.query.xfr(
                    self.ns.host,
                    origin,
                    port=self.ns.port,
                    keyring=self.keyring,
                    keyname=self.ns.tsig_key_name,
                    keyalgorithm=dns.tsig.HMAC_SHA256,
                    relativize=False,
                    lifetime=60,
                ),
                relativize=False,
            )
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            raise DnsError(
                f"transferring {zone} from {self}: {words(exc)}", retryable=True
            ) from exc
        out: dict[Key, RRState] = {}
        for name, rds in z.iterate_rdatasets():
            rdtype = dns.rdatatype.to_text(rds.rdtype)
            key = (relative(origin, name), rdtype)
            if rdtype in ZONE_OWN or key == ("@", "NS"):
                continue
            out[key] = state_of(rds)
        soa = z.get_rdataset(origin, "SOA")
        return zone_state_of(soa, z.get_rdataset(origin, "NS")), out

    def _remote(self, argv: list[str], stdin: bytes, what: str) -> str:
        """Run ``argv`` on the nameserver's server through its transport (SSH)."""
        from servers.connection import open_transport
        from servers.transport import TransportError

        try:
            res = open_transport(self.ns.server).run(argv, stdin=stdin, timeout=60)
        except TransportError as exc:
            raise DnsError(f"{what} on {self}: {words(exc)}", retryable=True) from exc
        if not res.ok:
            said = (res.stderr or res.stdout).strip().replace("rndc: ", "")
            raise NothingApplied(f"{what} on {self}: {said[:500]}")
        return res.stdout

    def rndc(self, *args: str) -> str:
        """rndc over the nameserver's control channel, with a key file that lives only for
        the call (the secret never reaches a command line). With a server, rndc runs there
        (over SSH) against its local control channel, reading the key from its stdin."""
        secret = self.ns.rndc_secret
        if self.ns.server_id is not None:
            clause = f'key "rndc-key" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
            argv = ["rndc", "-k", "/dev/stdin", "-s", "127.0.0.1", "-p", str(self.ns.rndc_port)]
            return self._remote([*argv, *args], clause.encode(), f"rndc {args[0]}")
        with tempfile.TemporaryDirectory() as tmp:
            keyfile = Path(tmp) / "rndc.key"
            fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f'key "rndc-key" {{ algorithm hmac-sha256; secret "{secret}"; }};\n')
            argv = ["rndc", "-k", str(keyfile), "-s", self.ns.host, "-p", str(self.ns.rndc_port)]
            try:
                done = subprocess.run(
                    [*argv, *args], capture_output=True, text=True, timeout=30, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise DnsError(f"rndc {args[0]} on {self}: {words(exc)}", retryable=True) from exc
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().replace("rndc: ", "")
            raise NothingApplied(f"rndc {args[0]} on {self}: {said}")
        return done.stdout

    def create_zone(
        self, zone: str, state: ZoneState, records: dict[Key, RRState] | None = None
    ) -> None:
        """A first zone file (SOA, NS and ``records``) in ``zone_dir``, then ``rndc
        addzone``; the zone takes dynamic updates with the nameserver's TSIG key from then on."""
        if not self.ns.zone_dir:
            raise NothingApplied(f"{self} has no zone file directory for new zones")
        path = self._zone_file(zone)
        origin = dns.name.from_text(zone + ".")
        lines = [f"$TTL {state.ttl}", f"{zone}. {state.ttl} IN SOA {state.soa_text()}"]
        lines += [f"{zone}. {state.ttl} IN NS {ns}" for ns in state.nameservers]
        for (name, rdtype), rr in sorted((records or {}).items()):
            owner = absolute(origin, name).to_text()
            lines += [f"{owner} {rr.ttl} IN {rdtype} {text}" for text in sorted(rr.records)]
        text = "\n".join(lines) + "\n"
        if self.ns.server_id is not None:
            # A constant script; the path (validated directory + validated zone name) is an
            # argument and the content comes on stdin.
            script = 'umask 022 && cat > "$1.new" && mv "$1.new" "$1"'
            self._remote(
                ["sh", "-c", script, "panel-zonefile", str(path)],
                text.encode(),
                "writing the zone file",
            )
        else:
            try:
                path.write_text(text)
            except OSError as exc:
                raise NothingApplied(f"writing {path}: {words(exc)}", retryable=True) from exc
        self.sent.append("addzone")
        self.rndc("addzone", zone, self._zone_config(zone, signed=False))

    def _zone_file(self, zone: str) -> Path:
        return Path(self.ns.zone_dir) / f"{zone}.db"

    def _zone_config(self, zone: str, *, signed: bool) -> str:
        key = self.ns.tsig_key_name
        # Inline signing keeps the updated zone unsigned and serves a signed copy, so
        # unsigning is serving the unsigned zone again.
        dnssec = " dnssec-policy default; inline-signing yes;" if signed else ""
        return (
            f'{{ type primary; file "{self._zone_file(zone)}"; '
            f"update-policy {{ grant {key} zonesub ANY; }}; "
            f"allow-transfer {{ key {key}; }};{dnssec} }};"
        )

    def set_signing(self, zone: str, signed: bool) -> None:
        """BIND 9.18 does not change a live zone's signing with ``rndc modzone``: the
        zone's updates are written into its file (``rndc sync``), it is removed and added
        again with or without ``dnssec-policy``; keys stay in BIND's key directory. Should
        the new configuration be refused, the previous one is put back."""
        if not self.ns.zone_dir:
            raise NothingApplied(f"{self} has no zone file directory")
        self.rndc("sync", zone)
        self.sent.append("delzone")
        self.rndc("delzone", zone)
        try:
            self.rndc("addzone", zone, self._zone_config(zone, signed=signed))
        except DnsError:
            self.rndc("addzone", zone, self._zone_config(zone, signed=not signed))
            raise

    def delete_zone(self, zone: str) -> None:
        self.sent.append("delzone")
        try:
            self.rndc("delzone", "-clean", zone)
        except NothingApplied as exc:
            if "not found" not in str(exc):
                raise

    def update(self, zone: str, soa: ZoneState | None, changes: list[Change], *, checked: bool):
        origin = dns.name.from_text(zone + ".")
        msg = dns.update.UpdateMessage(
            origin,
            keyring=self.keyring,
            keyname=dns.name.from_text(self.ns.tsig_key_name),
            keyalgorithm=dns.tsig.HMAC_SHA256,
        )
        for change in changes:
            name, rdtype = change.key
            owner = absolute(origin, name)
            if checked:
                if change.before is None:
                    msg.absent(owner, rdtype)
                else:
                    msg.present(owner, *rdatas(origin, rdtype, change.before))
            msg.delete(owner, rdtype)
            if change.after is not None:
                msg.add(owner, change.after.ttl, *rdatas(origin, rdtype, change.after))
        if soa is not None:
            msg.replace(origin, soa.ttl, "SOA", soa.soa_text())
            msg.delete(origin, "NS")
            for ns in soa.nameservers:
                msg.add(origin, soa.ttl, "NS", ns)
        self.sent.append("update")
        try:
            answer = dns.query.tcp(msg, self.ns.host, port=self.ns.port, timeout=30)
        except ConnectionRefusedError as exc:
            raise NothingApplied(
                f"sending an update to {self}: {words(exc)}", retryable=True
            ) from exc
        except dns.tsig.PeerError as exc:
            raise NothingApplied(f"{self} refused the key: {words(exc)}") from exc
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            raise DnsError(f"sending an update to {self}: {words(exc)}", retryable=True) from exc
        rcode = answer.rcode()
        if rcode == dns.rcode.NOERROR:
            return None
        said = f"{self} answered {dns.rcode.to_text(rcode)}"
        if rcode in STALE_RCODES:
            said += f" ({STALE})"
        if rcode not in UNIT_RCODES:
            raise NothingApplied(said, retryable=rcode == dns.rcode.SERVFAIL)
        return said


class PowerDns(Adapter):
    batch = 5000  # one PATCH has no 64 KB limit, unlike a DNS message

    def _call(self, method: str, path: str, body=None):
        url = self.ns.api_url.rstrip("/") + "/api/v1/servers/localhost" + path
        if not url.startswith(("http://", "https://")):
            raise NothingApplied(f"{self}: the API URL is not http(s)")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s)
        request.add_header("X-API-Key", self.ns.api_key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        self.sent.append(method.lower())
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - http(s)
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                said = json.loads(text).get("error", text)
            except ValueError:
                said = text
            error = NothingApplied if exc.code in (400, 401, 403, 404, 409, 422) else DnsError
            raise error(
                f"{self} answered {exc.code} to {method} {path}: {said.strip()[:300]}",
                retryable=exc.code >= 500,
            ) from exc
        except (OSError, ValueError) as exc:
            raise NothingApplied(f"reaching {self}: {words(exc)}", retryable=True) from exc
        return json.loads(raw) if raw else None

    @staticmethod
    def _id(zone: str) -> str:
        return f"/zones/{zone}."

    def zone_exists(self, zone: str) -> bool:
        try:
            self._call("GET", self._id(zone) + "?rrsets=false")
        except NothingApplied as exc:
            if " 404 " in str(exc) or " 422 " in str(exc):
                return False
            raise
        return True

    def read_zone(self, zone: str):
        origin = dns.name.from_text(zone + ".")
        try:
            data = self._call("GET", self._id(zone))
        except NothingApplied as exc:
            if " 404 " in str(exc) or " 422 " in str(exc):
                return None, {}
            raise
        out: dict[Key, RRState] = {}
        soa = ns = None
        for rrset in data.get("rrsets", []):
            name = relative(origin, dns.name.from_text(rrset["name"]))
            rdtype = rrset["type"]
            texts = [r["content"] for r in rrset["records"] if not r.get("disabled")]
            if not texts:
                continue
            kind = dns.rdatatype.from_text(rdtype)
            parsed = [
                dns.rdata.from_text(dns.rdataclass.IN, kind, t, origin=origin, relativize=False)
                for t in texts
            ]
            if rdtype == "SOA" and name == "@":
                soa = (rrset["ttl"], parsed)
            elif rdtype == "NS" and name == "@":
                ns = parsed
            elif rdtype not in ZONE_OWN:
                out[(name, rdtype)] = RRState(
                    rrset["ttl"],
                    frozenset(r.to_text(origin=None, relativize=False) for r in parsed),
                )
        state = None
        if soa is not None:
            s = soa[1][0]
            state = ZoneState(
                s.mname.to_text(),
                s.rname.to_text(),
                s.serial,
                s.refresh,
                s.retry,
                s.expire,
                s.minimum,
                soa[0],
                tuple(sorted(r.target.to_text() for r in ns or [])),
            )
        return state, out

    def set_signing(self, zone: str, signed: bool) -> None:
        """One active CSK (ECDSA P-256) to sign, none to unsign; then ``rectify`` (the
        ordering and auth data PowerDNS signs with) and a flush of the zone's cached
        answers. The backend must have DNSSEC enabled (``gsqlite3-dnssec=yes`` ...)."""
        path = self._id(zone) + "/cryptokeys"
        keys = self._call("GET", path) or []
        if signed and not any(k.get("active") for k in keys):
            body = {"keytype": "csk", "active": True, "algorithm": "ECDSAP256SHA256"}
            self._call("POST", path, body)
        if not signed:
            for key in keys:
                self._call("DELETE", f"{path}/{key['id']}")
        # A signed zone's every change needs fresh ordering data: PowerDNS rectifies it
        # after each API change; an unsigned one is rectified only where update() says.
        self._call("PUT", self._id(zone), {"api_rectify": signed})
        self._call("PUT", self._id(zone) + "/rectify")
        # Its packet cache would keep answering as before for a while.
        self._call("PUT", f"/cache/flush?domain={zone}.")

    def create_zone(
        self, zone: str, state: ZoneState, records: dict[Key, RRState] | None = None
    ) -> None:
        origin = dns.name.from_text(zone + ".")
        body = {
            "name": f"{zone}.",
            "kind": "Native",
            "nameservers": [],
            "soa_edit_api": "",
            # Rectifying rewrites the ordering and auth data of every record (~150 ms per
            # change at 50,000 records) and only signing needs it: set_signing turns it on
            # for a signed zone. Unsigned answers, referrals included, do not depend on it.
            "api_rectify": False,
            "rrsets": [self._soa_rrset(zone, state), self._ns_rrset(zone, state)]
            + [
                {
                    "name": absolute(origin, name).to_text(),
                    "type": rdtype,
                    "ttl": rr.ttl,
                    "records": [{"content": t, "disabled": False} for t in sorted(rr.records)],
                }
                for (name, rdtype), rr in sorted((records or {}).items())
            ],
        }
        self._call("POST", "/zones", body)

    def delete_zone(self, zone: str) -> None:
        try:
            self._call("DELETE", self._id(zone))
        except NothingApplied as exc:
            if " 404 " not in str(exc) and " 422 " not in str(exc):
                raise

    @staticmethod
    def _soa_rrset(zone: str, state: ZoneState) -> dict:
        return {
            "name": f"{zone}.",
            "type": "SOA",
            "ttl": state.ttl,
            "changetype": "REPLACE",
            "records": [{"content": state.soa_text(), "disabled": False}],
        }

    @staticmethod
    def _ns_rrset(zone: str, state: ZoneState) -> dict:
        return {
            "name": f"{zone}.",
            "type": "NS",
            "ttl": state.ttl,
            "changetype": "REPLACE",
            "records": [{"content": ns, "disabled": False} for ns in state.nameservers],
        }

    def update(self, zone: str, soa: ZoneState | None, changes: list[Change], *, checked: bool):
        origin = dns.name.from_text(zone + ".")
        if checked and changes:
            # The API has no prerequisites: compare what the server serves with what the
            # plan expected just before sending (DNS queries for a few record sets, one GET
            # of the zone for many, or to confirm a difference a wildcard may have caused).
            keys = [c.key for c in changes]
            served = self.served(zone, keys) if len(keys) <= QUERY_LIMIT else None
            if served is None or any(served.get(c.key) != c.before for c in changes):
                _state, served = self.read_zone(zone)
            stale = [c.key for c in changes if served.get(c.key) != c.before]
            if stale:
                name, rdtype = stale[0]
                return f"{self} serves {name} {rdtype} differently ({STALE})"
        rrsets = []
        for change in changes:
            name, rdtype = change.key
            owner = absolute(origin, name).to_text()
            if change.after is None:
                rrsets.append({"name": owner, "type": rdtype, "changetype": "DELETE"})
            else:
                rrsets.append(
                    {
                        "name": owner,
                        "type": rdtype,
                        "ttl": change.after.ttl,
                        "changetype": "REPLACE",
                        "records": [
                            {"content": t, "disabled": False} for t in sorted(change.after.records)
                        ],
                    }
                )
        if soa is not None:
            rrsets += [self._soa_rrset(zone, soa), self._ns_rrset(zone, soa)]
        if not rrsets:
            return None
        try:
            self._call("PATCH", self._id(zone), {"rrsets": rrsets})
        except NothingApplied as exc:
            if " 422 " in str(exc) and len(changes) > 0:
                return str(exc)  # one record set's content: bisection finds it
            raise
        return None


def adapter_for(ns) -> Adapter:
    return PowerDns(ns) if ns.kind == "powerdns" else Bind(ns)
