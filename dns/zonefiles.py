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
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zone
import dns.zonefile
from core import audit
from dns.models import Nameserver, Record, Zone
from dns.validation import CONTROL, RECORD_TYPES, origin_of

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


def _parse(text: str, origin: dns.name.Name, default_ttl: int = 3600) -> Parsed:
    """$ORIGIN, $TTL and $GENERATE are allowed; $INCLUDE is not (it would read the panel's
    own files)."""
    manager = dns.zonefile.RRSetsReaderManager(origin, False, dns.rdataclass.IN)
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


def parse_zone_file(zone: Zone, text: str) -> Parsed:
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
        return _parse(text, origin, zone.default_ttl)
    except dns.exception.DNSException as exc:
        raise _syntax_error(text, origin, exc, zone.default_ttl) from exc


def records_of(zone: Zone, parsed) -> tuple[list[Record], list[str]]:
    """The records of a parsed zone as Record rows (not saved), checked as the services
    check one record; and what was left out (SOA, apex NS, DNSSEC data)."""
    from dns.services import conflicts

    origin = origin_of(zone.name)
    errors: list[str] = []
    skipped: list[str] = []
    rows: list[Record] = []
    by_name: dict[str, list[tuple[str, str]]] = {}
    for name, rds in parsed.iterate_rdatasets():
        rdtype = dns.rdatatype.to_text(rds.rdtype)
        label = "@" if name == origin else name.relativize(origin).to_text()
        if not name.is_subdomain(origin):
            errors.append(f"{name}: not inside the zone {zone.name}.")
            continue
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
            from dns.validation import normalise_record_name

            label = normalise_record_name(label, zone.name)
        except ValidationError as exc:
            errors.append(f"{label} {rdtype}: {' '.join(exc.messages)}")
            continue
        ttl = None if rds.ttl == zone.default_ttl else rds.ttl
        for rdata in rds:
            content = rdata.to_text(origin=None, relativize=False)
            others = by_name.setdefault(label, [])
            found = conflicts(label, rdtype, content, others)
            if found:
                errors.append(f"{label} {rdtype} {content[:60]}: {next(iter(found.values()))[0]}")
                continue
            others.append((rdtype, content))
            rows.append(Record(zone=zone, name=label, type=rdtype, ttl=ttl, content=content))
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ValidationError(errors[:MAX_ERRORS])
    return rows, skipped


def import_records(zone: Zone, parsed, *, actor, replace: bool, how: str):
    """Store a parsed zone's records in ``zone``: all of them or none. ``replace`` removes
    the zone's current records first; otherwise they are kept and must not conflict."""
    from dns.services import MAX_RECORDS_PER_ZONE, _changed, conflicts

    rows, skipped = records_of(zone, parsed)
    with transaction.atomic():
        zone = Zone.objects.select_for_update().get(pk=zone.pk)
        removed = 0
        if replace:
            removed = Record.objects.filter(zone=zone).count()
            Record.objects.filter(zone=zone).delete()
        else:
            current: dict[str, list[tuple[str, str]]] = {}
            for name, rdtype, content in Record.objects.filter(zone=zone).values_list(
                "name", "type", "content"
            ):
                current.setdefault(name, []).append((rdtype, content))
            errors = []
            for row in rows:
                found = conflicts(row.name, row.type, row.content, current.get(row.name, []))
                if found:
                    errors.append(f"{row.name} {row.type}: {next(iter(found.values()))[0]}")
                if len(errors) >= MAX_ERRORS:
                    break
            if errors:
                raise ValidationError(errors)
        total = Record.objects.filter(zone=zone).count() + len(rows)
        if total > MAX_RECORDS_PER_ZONE:
            raise ValidationError(f"A zone holds at most {MAX_RECORDS_PER_ZONE} records.")
        Record.objects.bulk_create(rows, batch_size=2000)
        audit.record(
            "zone.import",
            zone,
            actor=actor,
            changes={"records": [removed, len(rows)], "source": [None, how]},
        )
        _changed(zone, actor, None)
    return ImportResult(added=len(rows), removed=removed, skipped=skipped)


def do_import_zone_file(zone: Zone, text: str, *, actor, replace: bool = True) -> ImportResult:
    return import_records(
        zone, parse_zone_file(zone, text), actor=actor, replace=replace, how="zone file"
    )


def do_import_axfr(zone: Zone, host: str, port: int = 53, *, actor, replace: bool = True):
    """Start an Operation that transfers the zone from ``host`` and imports it. Only
    administrators may name loopback or private addresses (the panel's own network)."""
    import ipaddress

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
    if errors:
        raise ValidationError(errors)
    return start_operation(
        kind="dns.import",
        task="dns.tasks.import_axfr",
        owner=zone.owner,
        requested_by=actor,
        target=zone,
        target_action=APPLY,
        args={"zone_id": zone.pk, "host": str(address), "port": port, "replace": bool(replace)},
    )


def transfer(zone: Zone, host: str, port: int = 53, *, keyring=None, keyname=None):
    """The zone as ``host`` serves it, by AXFR (``dns.query.xfr``)."""
    from dns.providers import DnsError, words

    origin = origin_of(zone.name)
    try:
        return dns.zone.from_xfr(
            dns.query.xfr(
                host,
                origin,
                port=port,
                keyring=keyring,
                keyname=keyname,
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
    nameservers = list(
        Nameserver.objects.filter(group_id=zone.group_id).values_list("hostname", flat=True)
    )
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
