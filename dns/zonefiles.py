"""Zone files in and out: import a BIND zone file (or a zone transfer) into a zone, export a
zone as a BIND zone file. dnspython parses; every record then passes the same checks as one
typed in the portal, and an import with any error imports nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

import dns.exception
import dns.name
import dns.node
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zone
import dns.zonefile
from core import audit
from dns.models import Record, Zone
from dns.validation import CONTROL, RECORD_TYPES, check_reverse_record, is_reverse, origin_of

MAX_ERRORS = 20
MAX_IMPORT_BYTES = 20 * 1024 * 1024
_WHERE = re.compile(r"^<string>:(\d+): ")
# The zone's own records, and DNSSEC data a signer makes: left out of an import.
SKIPPED = {"SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY", "ZONEMD"}


@dataclass
class ImportResult:
    added: int
    removed: int
    skipped: list[str]


def _syntax_error(
    text: str, origin: dns.name.Name, exc: Exception, default_ttl: int
) -> ValidationError:
    """dnspython's error with the line it is about. dnspython counts a record's line once it
    has read its end, so an error in a record's data is reported on the next line: the
    prefix that ends before that line tells which it is."""
    message = str(exc)
    found = _WHERE.match(message)
    if not found:
        return ValidationError(f"The zone file cannot be read: {message}")
    line, words = int(found[1]), message[found.end() :]
    if line > 1:
        head = "\n".join(text.split("\n")[: line - 1]) + "\n"
        try:
            _parse(head, origin, default_ttl)
        except dns.exception.DNSException as again:
            if str(again).endswith(words):
                line -= 1
    lines = text.split("\n")
    shown = lines[line - 1].strip()[:120] if 0 < line <= len(lines) else ""
    return ValidationError(f"Line {line}: {words}" + (f" ({shown})" if shown else ""))


class Parsed:
    """A zone file's record sets, every name kept (dnspython's zone reader silently drops
    names outside the zone; here they are errors)."""

    def __init__(self, rrsets) -> None:
        self.rrsets = rrsets

    def iterate_rdatasets(self):
        for rrset in self.rrsets:
            yield rrset.name, rrset


class _IndexedTransaction(dns.zonefile.RRsetsReaderTransaction):
    """dnspython's rrset reader finds a name's record sets by scanning every set read so
    far (quadratic: 5,000 records took minutes); this one keeps them indexed by name."""

    def __init__(self, manager, replacement, read_only) -> None:
        super().__init__(manager, replacement, read_only)
        self.by_name: dict[dns.name.Name, set] = {}

    def _get_node(self, name):
        keys = self.by_name.get(name)
        if not keys:
            return None
        node = dns.node.Node()
        node.rdatasets = [self.rdatasets[k] for k in keys]
        return node

    def _put_rdataset(self, name, rdataset) -> None:
        key = (name, rdataset.rdtype, rdataset.covers)
        self.rdatasets[key] = rdataset
        self.by_name.setdefault(name, set()).add(key)

    def _delete_name(self, name) -> None:
        for key in self.by_name.pop(name, ()):
            self.rdatasets.pop(key, None)

    def _delete_rdataset(self, name, rdtype, covers) -> None:
        key = (name, rdtype, covers)
        self.rdatasets.pop(key, None)
        self.by_name.get(name, set()).discard(key)

    def _name_exists(self, name) -> bool:
        return bool(self.by_name.get(name))


class _IndexedManager(dns.zonefile.RRSetsReaderManager):
    def writer(self, replacement=False):
        return _IndexedTransaction(self, True, False)


def _parse(text: str, origin: dns.name.Name, default_ttl: int = 3600) -> Parsed:
    """$ORIGIN, $TTL and $GENERATE are allowed; $INCLUDE is not (it would read the panel's
    own files)."""
    manager = _IndexedManager(origin, False, dns.rdataclass.IN)
    with manager.writer(True) as txn:
        tok = dns.tokenizer.Tokenizer(text, "<string>")
        reader = dns.zonefile.Reader(
            tok,
            dns.rdataclass.IN,
            txn,
            allow_directives={"$ORIGIN", "$TTL", "$GENERATE"},
            default_ttl=default_ttl,
        )
        reader.zone_origin = dns.name.root  # keep names outside the zone: they are errors
        reader.read()
    return Parsed(manager.rrsets)


class _Slow(Exception):
    """The fast reader met something it leaves to dnspython's (parentheses, $GENERATE,
    quotes in a name, another class, an error: dnspython's reader words errors)."""


class _RRs:
    """One record set read by the fast reader: what ``iterate_rdatasets`` yields."""

    __slots__ = ("rdtype", "rdclass", "ttl", "items")

    def __init__(self, rdtype, ttl) -> None:
        self.rdtype, self.rdclass, self.ttl, self.items = rdtype, dns.rdataclass.IN, ttl, []

    def __iter__(self):
        return iter(self.items)


class FastParsed:
    def __init__(self, sets: dict) -> None:
        self.sets = sets

    def iterate_rdatasets(self):
        for (name, _rdtype), rrs in self.sets.items():
            yield name, rrs


_FIELD = re.compile(r"(\S+)\s*")
_CLASSES = {"CH", "CHAOS", "HS", "HESIOD", "NONE", "ANY"}


def _fast_parse(text: str, origin: dns.name.Name, default_ttl: int) -> FastParsed:
    """The common one-line-per-record zone file read line by line: each rdata parsed once by
    ``dns.rdata.from_text``, record sets keyed in a dict (dnspython's reader costs ~10x).
    Same meaning as dnspython's reader (relative names, blank owner = the last one, TTL and
    class in either order, a record set's TTL the smallest given); anything else raises
    ``_Slow`` and the whole file goes through dnspython's reader instead."""
    import dns.rdata
    import dns.ttl

    current = origin
    at_origin = True
    origin_length = len(origin.to_text())
    last_name = None
    sets: dict = {}
    names: dict[str, dns.name.Name | str] = {}
    classes: dict = {}
    for line in text.split("\n"):
        body = line.strip()
        if not body or body[0] == ";":
            continue
        if "(" in body or ")" in body:
            raise _Slow
        if body[0] == "$":
            word, _, rest = body.partition(" ")
            rest = rest.split(";", 1)[0].strip()
            if word.upper() == "$TTL" and rest and " " not in rest:
                default_ttl = dns.ttl.from_text(rest)
            elif word.upper() == "$ORIGIN" and rest and " " not in rest:
                current = dns.name.from_text(rest, current)
                at_origin = current == origin
                names = {}
            else:
                raise _Slow
            continue
        pos = 0
        if line[0] in " \t":
            if last_name is None:
                raise _Slow
            name = last_name
            pos = len(line) - len(line.lstrip())
        else:
            m = _FIELD.match(line)
            token = m[1]
            pos = m.end()
            if '"' in token or ";" in token or "\\" in token or not token.isascii():
                raise _Slow
            name = names.get(token)
            if name is None:
                if token == "@" and current == origin:
                    name = "@"
                elif at_origin and not token.endswith(".") and token != "@":
                    if len(token) + origin_length > 253 or any(
                        len(label) > 63 or not label for label in token.split(".")
                    ):
                        raise _Slow  # dnspython words it, with its line
                    name = token.lower()  # relative to the zone: the label as it stands
                else:
                    name = current if token == "@" else dns.name.from_text(token, current)
                    if name == origin:
                        name = "@"
                    elif name.is_subdomain(origin):  # one key per name, however written
                        name = name.relativize(origin).to_text().lower()
                names[token] = name
            last_name = name
        ttl = None
        rdtype = None
        for _ in range(3):
            m = _FIELD.match(line, pos)
            if m is None:
                raise _Slow
            token, pos = m[1], m.end()
            upper = token.upper()
            if upper == "IN":
                continue
            if upper in _CLASSES or upper.startswith("CLASS"):
                raise _Slow
            if ttl is None and token[0].isdigit():
                ttl = dns.ttl.from_text(token)
                continue
            rdtype = dns.rdatatype.from_text(upper)
            break
        if rdtype is None:
            raise _Slow
        rest = line[pos:]
        if rest.startswith("\\#"):
            raise _Slow  # generic (RFC 3597) syntax
        cls = classes.get(rdtype)
        if cls is None:
            cls = classes[rdtype] = dns.rdata.get_rdata_class(dns.rdataclass.IN, rdtype)
        # What dns.rdata.from_text does, minus its per-call set-up.
        tok = dns.tokenizer.Tokenizer(rest)
        rd = cls.from_text(dns.rdataclass.IN, rdtype, tok, current, False, dns.name.root)
        tok.get_eol()
        ttl = default_ttl if ttl is None else ttl
        key = (name, rdtype)
        rrs = sets.get(key)
        if rrs is None:
            rrs = sets[key] = _RRs(rdtype, ttl)
        elif ttl < rrs.ttl:
            rrs.ttl = ttl
        rrs.items.append(rd)
    return FastParsed(sets)


def parse_zone_file(zone: Zone, text: str):
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("The zone file is empty.")
    if len(text) > MAX_IMPORT_BYTES:
        raise ValidationError("A zone file is at most 20 MB.")
    text = text.replace("\r\n", "\n")
    bad = CONTROL.search(text.replace("\n", "").replace("\t", ""))
    if bad:
        line = text[: text.find(bad.group())].count("\n") + 1
        raise ValidationError(f"Line {line}: a control character (U+{ord(bad.group()):04X}).")
    origin = origin_of(zone.name)
    try:
        return _fast_parse(text, origin, zone.default_ttl)
    except (_Slow, dns.exception.DNSException, ValueError):
        pass  # dnspython's reader decides, and words the error with its line
    try:
        return _parse(text, origin, zone.default_ttl)
    except dns.exception.DNSException as exc:
        raise _syntax_error(text, origin, exc, zone.default_ttl) from exc


Row = tuple[str, str, "int | None", str]  # name, type, ttl, content


def records_of(zone: Zone, parsed) -> tuple[list[Row], list[str]]:
    """The records of a parsed zone as (name, type, ttl, content), checked as the services
    check one record; and what was left out (SOA, apex NS, DNSSEC data)."""
    from dns.services import conflicts
    from dns.validation import normalise_record_name

    origin = origin_of(zone.name)
    errors: list[str] = []
    skipped: list[str] = []
    rows: list[Row] = []
    by_name: dict[str, list[tuple[str, str]]] = {}
    for name, rds in parsed.iterate_rdatasets():
        rdtype = dns.rdatatype.to_text(rds.rdtype)
        if isinstance(name, str):
            label = name  # the fast reader's label, relative to the zone already
        elif not name.is_subdomain(origin):
            errors.append(f"{name}: not inside the zone {zone.name}.")
            continue
        else:
            label = "@" if name == origin else name.relativize(origin).to_text()
        if rdtype in SKIPPED or (rdtype == "NS" and label == "@"):
            skipped.append(f"{label} {rdtype}")
            continue
        if rds.rdclass != dns.rdataclass.IN:
            errors.append(f"{label} {rdtype}: only class IN records are served.")
            continue
        if rdtype not in RECORD_TYPES:
            errors.append(f"{label} {rdtype}: the panel does not manage {rdtype} records.")
            continue
        if rdtype == "CNAME" and label == "@":
            errors.append("@ CNAME: the zone itself cannot be a CNAME.")
            continue
        try:
            label = normalise_record_name(label, zone.name)
        except ValidationError as exc:
            errors.append(f"{label} {rdtype}: {' '.join(exc.messages)}")
            continue
        ttl = None if rds.ttl == zone.default_ttl else rds.ttl
        reverse = is_reverse(zone.name)
        others = by_name.setdefault(label, [])
        seen = set()
        for rdata in rds:
            content = rdata.to_text(origin=None, relativize=False)
            if content in seen:
                continue  # the same record twice in a file is one record (as dnspython reads)
            seen.add(content)
            if reverse:
                bad = check_reverse_record(zone.name, label, rdtype, content)
                if bad:
                    first = next(iter(bad.values()))[0]
                    errors.append(f"{label} {rdtype} {content[:60]}: {first}")
                    continue
            if others:
                found = conflicts(label, rdtype, content, others)
                if found:
                    first = next(iter(found.values()))[0]
                    errors.append(f"{label} {rdtype} {content[:60]}: {first}")
                    continue
            others.append((rdtype, content))
            rows.append((label, rdtype, ttl, content))
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ValidationError(errors[:MAX_ERRORS])
    return rows, skipped


def _insert(zone: Zone, rows: list[Row]) -> None:
    """Many records in few statements, without a model instance per row (bulk_create
    spends most of a 50,000-record import building and compiling them)."""
    import uuid

    from django.utils import timezone

    from core import bulk

    now = timezone.now()
    bulk.insert_rows(
        Record,
        ("uuid", "zone", "name", "type", "ttl", "content", "created_at"),
        [
            (uuid.uuid4(), zone.pk, name, rdtype, ttl, content, now)
            for name, rdtype, ttl, content in rows
        ],
    )


def import_records(zone: Zone, parsed, *, actor, replace: bool, how: str):
    """Store a parsed zone's records in ``zone``: all of them or none. ``replace`` makes
    the zone's records those of the file; otherwise they are kept and must not conflict.
    Only what differs is written, and only the record sets that changed are published."""
    from dns.services import MAX_RECORDS_PER_ZONE, _changed, conflicts, rrset_unit

    rows, skipped = records_of(zone, parsed)
    with transaction.atomic():
        zone = Zone.objects.select_for_update().get(pk=zone.pk)
        current: dict[tuple[str, str], dict[str, tuple[int, int | None]]] = {}
        for pk, name, rdtype, ttl, content in (
            Record.objects.filter(zone=zone)
            .values_list("pk", "name", "type", "ttl", "content")
            .iterator(chunk_size=10000)
        ):
            current.setdefault((name, rdtype), {})[content] = (pk, ttl)
        new: dict[tuple[str, str], dict[str, int | None]] = {}
        for name, rdtype, ttl, content in rows:
            new.setdefault((name, rdtype), {})[content] = ttl
        if not replace:
            at_name: dict[str, list[tuple[str, str]]] = {}
            for (name, rdtype), contents in current.items():
                at_name.setdefault(name, []).extend((rdtype, c) for c in contents)
            errors = []
            for name, rdtype, _ttl, content in rows:
                found = conflicts(name, rdtype, content, at_name.get(name, []))
                if found:
                    errors.append(f"{name} {rdtype}: {next(iter(found.values()))[0]}")
                if len(errors) >= MAX_ERRORS:
                    break
            if errors:
                raise ValidationError(errors)
        doomed: list[int] = []
        added: list[Row] = []
        retime: dict[int | None, list[int]] = {}
        units: set[str] = set()
        for key in set(current) | set(new):
            old, want = current.get(key, {}), new.get(key)
            if want is None:
                if replace:
                    doomed.extend(pk for pk, _ttl in old.values())
                    units.add(rrset_unit(zone, *key))
                continue
            ttl = next(iter(want.values()))
            changed = False
            for content, (pk, old_ttl) in old.items():
                if content not in want and replace:
                    doomed.append(pk)
                    changed = True
                elif old_ttl != ttl:
                    retime.setdefault(ttl, []).append(pk)
                    changed = True
            fresh = [(key[0], key[1], ttl, c) for c in want if c not in old]
            if fresh or changed:
                added.extend(fresh)
                units.add(rrset_unit(zone, *key))
        total = sum(len(v) for v in current.values()) - len(doomed) + len(added)
        if total > MAX_RECORDS_PER_ZONE:
            raise ValidationError(f"A zone holds at most {MAX_RECORDS_PER_ZONE} records.")
        for start in range(0, len(doomed), 900):
            Record.objects.filter(pk__in=doomed[start : start + 900]).delete()
        for ttl, pks in retime.items():
            for start in range(0, len(pks), 900):
                Record.objects.filter(pk__in=pks[start : start + 900]).update(ttl=ttl)
        _insert(zone, added)
        audit.record(
            "zone.import",
            zone,
            actor=actor,
            changes={"records": [len(doomed), len(added)], "source": [None, how]},
        )
        if units:
            _changed(zone, actor, units)
    return ImportResult(added=len(added), removed=len(doomed), skipped=skipped)


def do_import_zone_file(zone: Zone, text: str, *, actor, replace: bool = True) -> ImportResult:
    return import_records(
        zone, parse_zone_file(zone, text), actor=actor, replace=replace, how="zone file"
    )


TSIG_ALGORITHMS = (
    "hmac-sha256",
    "hmac-sha512",
    "hmac-sha384",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
)


def tsig_of(data: dict) -> dict:
    """The ``tsig`` argument of ``do_import_axfr`` from a form's or serializer's fields
    (``tsig_name``, ``tsig_secret``, ``tsig_algorithm``)."""
    return {
        "name": data.get("tsig_name") or "",
        "secret": data.get("tsig_secret") or "",
        "algorithm": data.get("tsig_algorithm") or "hmac-sha256",
    }


def do_import_axfr(
    zone: Zone, host: str, port: int = 53, *, actor, replace: bool = True, tsig: dict | None = None
):
    """Start an Operation that transfers the zone from ``host`` and imports it. Only
    administrators may name loopback or private addresses (the panel's own network).
    ``tsig``: ``{"name", "secret" (base64), "algorithm"}`` when the server signs transfers;
    the secret goes to the worker encrypted and is never stored in clear."""
    import base64
    import binascii
    import ipaddress

    from core import crypto
    from core.operations import start_operation
    from core.policy import ADMIN, APPLY, role_of

    errors = {}
    try:
        address = ipaddress.ip_address(str(host).strip())
    except ValueError:
        address = None
        errors["host"] = ["Give the server's IP address."]
    if address is not None and role_of(actor) != ADMIN and not address.is_global:
        errors["host"] = ["Only public addresses can be transferred from."]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        errors["port"] = ["A port from 1 to 65535."]
    key = None
    if tsig and (tsig.get("name") or tsig.get("secret")):
        name, secret = str(tsig.get("name") or ""), str(tsig.get("secret") or "")
        algorithm = str(tsig.get("algorithm") or "hmac-sha256").lower()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
            errors["tsig_name"] = ["A key name: letters, digits, dots, dashes (up to 63)."]
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not 16 <= len(raw) <= 128:
            errors["tsig_secret"] = ["The key's secret in base64 (as in BIND's key clause)."]
        if algorithm not in TSIG_ALGORITHMS:
            errors["tsig_algorithm"] = [f"One of: {', '.join(TSIG_ALGORITHMS)}."]
        key = {"name": name, "secret": crypto.encrypt(secret), "algorithm": algorithm}
    if errors:
        raise ValidationError(errors)
    return start_operation(
        kind="dns.import",
        task="dns.tasks.import_axfr",
        owner=zone.owner,
        requested_by=actor,
        target=zone,
        target_action=APPLY,
        args={
            "zone_id": zone.pk,
            "host": str(address),
            "port": port,
            "replace": bool(replace),
            **({"tsig": key} if key else {}),
        },
    )


def transfer(zone: Zone, host: str, port: int = 53, *, tsig: dict | None = None):
    """The zone as ``host`` serves it, by AXFR (``dns.query.xfr``), signed with ``tsig``
    (name, clear secret, algorithm) when given."""
    import dns.tsigkeyring
    from dns.providers import DnsError, words

    origin = origin_of(zone.name)
    keyring = keyname = None
    algorithm = "hmac-sha256"
    if tsig:
        keyring = dns.tsigkeyring.from_text({tsig["name"]: tsig["secret"]})
        keyname, algorithm = tsig["name"], tsig["algorithm"]
    try:
        return dns.zone.from_xfr(
            dns.query.xfr(
                host,
                origin,
                port=port,
                keyring=keyring,
                keyname=keyname,
                keyalgorithm=algorithm,
                relativize=False,
                lifetime=30,
            ),
            relativize=False,
            check_origin=False,
        )
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        raise DnsError(f"transferring {zone.name} from {host}:{port}: {words(exc)}") from exc


def export_zone_file(zone: Zone) -> str:
    """The zone as a BIND zone file: $ORIGIN, $TTL, SOA, apex NS, then every record."""
    origin = f"{zone.name}."
    from dns.publishers import group_ns_names

    nameservers = group_ns_names(zone.group_id)
    mname = f"{nameservers[0]}." if nameservers else f"ns1.{origin}"
    rname = f"{zone.soa_rname or 'hostmaster.' + zone.name}."
    lines = [
        f"$ORIGIN {origin}",
        f"$TTL {zone.default_ttl}",
        f"@ IN SOA {mname} {rname} {zone.serial} {zone.soa_refresh} {zone.soa_retry} "
        f"{zone.soa_expire} {zone.soa_minimum}",
    ]
    lines += [f"@ IN NS {ns}." for ns in sorted(set(nameservers))]
    rows = Record.objects.filter(zone=zone).order_by("name", "type", "id")
    for name, rdtype, ttl, content in rows.values_list("name", "type", "ttl", "content").iterator(
        chunk_size=5000
    ):
        lines.append(f"{name} {'' if ttl is None else f'{ttl} '}IN {rdtype} {content}")
    return "\n".join(lines) + "\n"
