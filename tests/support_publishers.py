"""An RFC 2136 publisher: the worked example of a publisher (docs/apply-engine.md) that the
DNS app follows. It keeps a set of record sets in one zone on a nameserver that takes
TSIG-signed dynamic updates (BIND), with dnspython.

A unit is one record set, ``rrset:NAME/TYPE`` with NAME relative to the zone (``@`` for the
apex). Its state is an ``RRSet`` (TTL and records, names absolute), read by AXFR. The zone's
SOA and apex NS are the zone's own, never units. A change goes out as one UPDATE message
whose prerequisites say what the plan read (so a record changed by hand meanwhile refuses
the update instead of being overwritten); a unit the nameserver refuses is found by
bisection and fails alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.exception
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

from servers.engine import ApplyError, UnitFailed
from servers.engine.publisher import Change, Desired, Publisher, Refused, bisect

# Record types that are the zone's or DNSSEC's, never a unit of their own.
NOT_UNITS = {"SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY"}
# Answers to an UPDATE that one unit can cause (a name the policy denies, a prerequisite
# that no longer holds): bisection finds it. Any other rcode (NOTAUTH: a bad key or a zone
# not served here; SERVFAIL) refuses the message as a whole.
UNIT_RCODES = {
    dns.rcode.REFUSED,
    dns.rcode.YXDOMAIN,
    dns.rcode.NXDOMAIN,
    dns.rcode.YXRRSET,
    dns.rcode.NXRRSET,
    dns.rcode.NOTZONE,
}
STALE_RCODES = {dns.rcode.YXRRSET, dns.rcode.NXRRSET}


@dataclass(frozen=True)
class Nameserver:
    """A target: where the zone is served and the key that may update it."""

    name: str
    host: str
    port: int
    zone: str
    key_name: str
    secret: str = field(repr=False)  # base64 TSIG secret: never in a message or a log
    timeout: float = 3.0

    @property
    def lock_key(self) -> str:
        return f"nameserver:{self.name}"

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self.zone)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RRSet:
    ttl: int
    rdatas: frozenset[dns.rdata.Rdata]

    def __str__(self) -> str:
        kind = dns.rdatatype.to_text(next(iter(self.rdatas)).rdtype) if self.rdatas else ""
        return f"{kind} {', '.join(sorted(r.to_text() for r in self.rdatas))} (TTL {self.ttl})"


def parse_unit(origin: dns.name.Name, unit: str) -> tuple[dns.name.Name, dns.rdatatype.RdataType]:
    """``rrset:www/A`` -> (www.<zone>., A); ValueError for anything that is not a record
    set of this zone the panel may manage."""
    body = unit.removeprefix(RecordSets.unit_prefix)
    text, sep, kind = body.rpartition("/")
    if body == unit or not sep or not text:
        raise ValueError(f"{unit!r} is not a record set unit")
    try:
        name = origin if text == "@" else dns.name.from_text(text, origin=origin)
        rdtype = dns.rdatatype.from_text(kind)
    except dns.exception.DNSException as exc:
        raise ValueError(f"{unit!r}: {exc}") from exc
    if not name.is_subdomain(origin):
        raise ValueError(f"{name} is not in the zone {origin}")
    if dns.rdatatype.is_metatype(rdtype) or dns.rdatatype.to_text(rdtype) in NOT_UNITS:
        raise ValueError(f"{kind} records are not managed as units")
    if rdtype == dns.rdatatype.NS and name == origin:
        raise ValueError("the apex NS records belong to the zone")
    return name, rdtype


def unit_of(origin: dns.name.Name, name: dns.name.Name, rdtype: int) -> str:
    return f"{RecordSets.unit_prefix}{name.relativize(origin)}/{dns.rdatatype.to_text(rdtype)}"


class RecordSets(Publisher):
    name = "test-rfc2136"
    unit_prefix = "rrset:"

    def __init__(self) -> None:
        self.targets: dict[str, Nameserver] = {}  # key -> nameserver (the DNS app: a model)
        self.wanted: dict[str, tuple[int, list[str]]] = {}  # unit -> (TTL, records as text)
        self.reported: list[tuple[set[str], dict[str, str]]] = []
        self.status: dict[str, str] = {}  # unit -> "published" or "failed: why"
        self.sent: Counter[str] = Counter()  # messages sent, by kind ("update", "axfr")

    # -- the target and what should be live -------------------------------------------------
    def target(self, key: str) -> Nameserver:
        try:
            return self.targets[key]
        except KeyError:
            raise ApplyError(f"no nameserver {key!r}") from None

    def desired(self, target: Nameserver, units: set[str] | None) -> Iterable[Desired | UnitFailed]:
        origin = target.origin
        for unit, (ttl, texts) in sorted(self.wanted.items()):
            if units is not None and unit not in units:
                continue
            try:
                _name, rdtype = parse_unit(origin, unit)
                rdatas = frozenset(
                    dns.rdata.from_text(
                        dns.rdataclass.IN, rdtype, t, origin=origin, relativize=False
                    )
                    for t in texts
                )
            except (ValueError, dns.exception.DNSException) as exc:
                yield UnitFailed(unit, f"invalid record set: {exc}")
                continue
            if not rdatas or not 0 <= ttl <= 2**31 - 1:
                yield UnitFailed(unit, "a record set needs records and a TTL")
                continue
            yield Desired(unit, RRSet(ttl, rdatas))

    def report(self, target: Nameserver, ok: set[str], failed: dict[str, str]) -> None:
        self.reported.append((set(ok), dict(failed)))
        self.status.update(dict.fromkeys(ok, "published"))
        self.status.update({u: f"failed: {why}" for u, why in failed.items()})

    # -- the nameserver's side ----------------------------------------------------------------
    def read(self, target: Nameserver, units: set[str] | None) -> dict[str, RRSet]:
        """AXFR: exact (no wildcard synthesis, unlike queries), one read for any number of
        units. A zone of 50,000 records wants a cheaper plan (a published serial or digest
        per unit, IXFR): override ``plan`` then."""
        origin = target.origin
        self.sent["axfr"] += 1
        try:
            zone = dns.zone.from_xfr(
                dns.query.xfr(
                    target.host,
                    origin,
                    port=target.port,
                    keyring=self._keyring(target),
                    keyname=target.key_name,
                    keyalgorithm=dns.tsig.HMAC_SHA256,
                    relativize=False,
                    lifetime=target.timeout,
                ),
                relativize=False,
            )
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            raise ApplyError(
                f"reading {target.zone} from {target}: {_words(exc)}", retryable=True
            ) from exc
        served: dict[str, RRSet] = {}
        for name, rds in zone.iterate_rdatasets():
            if dns.rdatatype.to_text(rds.rdtype) in NOT_UNITS or (
                rds.rdtype == dns.rdatatype.NS and name == origin
            ):
                continue
            unit = unit_of(origin, name, rds.rdtype)
            if units is None or unit in units:
                served[unit] = RRSet(rds.ttl, frozenset(rds))
        return served

    def apply(self, target: Nameserver, changes: dict[str, Change]) -> dict[str, str]:
        origin = target.origin

        def send(units: list[str]) -> str | None:
            msg = self._update(target)
            for unit in units:
                change = changes[unit]
                name, rdtype = parse_unit(origin, unit)
                # The prerequisite is what the plan read: compare-and-swap, per unit.
                if change.before is None:
                    msg.absent(name, rdtype)
                else:
                    msg.present(name, *change.before.rdatas)
                msg.delete(name, rdtype)
                if change.after is not None:
                    msg.add(name, change.after.ttl, *change.after.rdatas)
            return self._send(target, msg)

        return bisect(sorted(changes), send)

    def revert(self, target: Nameserver, changes: dict[str, Change]) -> None:
        """One unconditional UPDATE: each unit back to what the plan read."""
        origin = target.origin
        msg = self._update(target)
        for unit, change in sorted(changes.items()):
            name, rdtype = parse_unit(origin, unit)
            msg.delete(name, rdtype)
            if change.before is not None:
                msg.add(name, change.before.ttl, *change.before.rdatas)
        refused = self._send(target, msg)
        if refused:
            raise ApplyError(refused, retryable=True)

    # -- the wire -----------------------------------------------------------------------------
    @staticmethod
    def _keyring(target: Nameserver) -> dict:
        return dns.tsigkeyring.from_text({target.key_name: target.secret})

    def _update(self, target: Nameserver) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(
            target.origin,
            keyring=self._keyring(target),
            keyname=dns.name.from_text(target.key_name),
            keyalgorithm=dns.tsig.HMAC_SHA256,
        )

    def _send(self, target: Nameserver, msg: dns.update.UpdateMessage) -> str | None:
        """None when the nameserver applied the message; its answer when one unit can be to
        blame. Raises Refused when it applied none of it for a reason of the whole message
        (or was not reached), ApplyError when nobody knows whether it applied it."""
        self.sent["update"] += 1
        try:
            answer = dns.query.tcp(msg, target.host, port=target.port, timeout=target.timeout)
        except ConnectionRefusedError as exc:
            raise Refused(f"sending an update to {target}: {_words(exc)}", retryable=True) from exc
        except dns.tsig.PeerError as exc:  # the server rejected our signature: not applied
            raise Refused(f"{target} refused the key: {_words(exc)}") from exc
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            raise ApplyError(
                f"sending an update to {target}: {_words(exc)}", retryable=True
            ) from exc
        rcode = answer.rcode()
        if rcode == dns.rcode.NOERROR:
            return None
        words = f"the nameserver answered {dns.rcode.to_text(rcode)}"
        if rcode in STALE_RCODES:
            words += " (what it serves changed since it was read)"
        if rcode not in UNIT_RCODES:
            raise Refused(words, retryable=rcode == dns.rcode.SERVFAIL)
        return words


def _words(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__
