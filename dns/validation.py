"""Checks for every zone name, record name and record content, done by dnspython's own
parsers (``dns.name``, ``dns.rdata``), so what the panel accepts is what a nameserver will
serve, and nothing accepted can add a line or a second record to a zone file or an UPDATE.

Values are normalised here: zone names to lowercase ASCII (IDN to punycode, no final dot),
record names to lowercase and relative to the zone (``@`` for the apex), content to
dnspython's canonical text with names made absolute.
"""

from __future__ import annotations

import functools
import re

from django.core.exceptions import ValidationError

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename

# The record types the panel manages. SOA and the apex NS are the zone's own; DNSSEC types
# are the signer's.
RECORD_TYPES = [
    "A",
    "AAAA",
    "CAA",
    "CNAME",
    "DS",
    "MX",
    "NS",
    "PTR",
    "SRV",
    "SSHFP",
    "TLSA",
    "TXT",
]
MAX_TTL = 2**31 - 1
# Labels a hostname-ish name may have: letters, digits, hyphen, underscore (service labels
# such as _dmarc, _sip._tcp); a lone "*" first for wildcards.
LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
ZONE_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _idna(text: str) -> str:
    """Unicode labels -> punycode (IDNA 2008, with UTS 46 mapping), lowercase."""
    try:
        if text.isascii():
            return text.lower()
        return (
            dns.name.from_unicode(text, origin=None, idna_codec=dns.name.IDNA_2008_Practical)
            .to_text(omit_final_dot=True)
            .lower()
        )
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise ValidationError(f"{text!r} is not a valid domain name: {exc}") from exc


def normalise_zone_name(value: str) -> str:
    """A zone name: two or more labels of letters, digits and hyphens (reverse zones such as
    ``2.0.10.in-addr.arpa`` included), IDN converted to punycode; no final dot kept."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Give the zone's domain name, such as example.com.")
    if CONTROL.search(value) or " " in value.strip():
        raise ValidationError("A domain name has no spaces or control characters.")
    text = _idna(value.strip().rstrip("."))
    labels = text.split(".")
    if len(labels) < 2:
        raise ValidationError("A zone name has at least two labels, such as example.com.")
    for label in labels:
        if len(label) > 63:
            raise ValidationError(f"The label {label[:20]}... is longer than 63 characters.")
        if not ZONE_LABEL.fullmatch(label):
            raise ValidationError(
                f"{label!r} is not a valid label: letters, digits and inner hyphens only."
            )
    if len(text) > 253:
        raise ValidationError("A domain name is at most 253 characters long.")
    return text


@functools.lru_cache(maxsize=256)
def origin_of(zone_name: str) -> dns.name.Name:
    """Cached: names are immutable, and an import asks for its zone's once per record."""
    return dns.name.from_text(zone_name + ".")


def normalise_record_name(value: str, zone_name: str) -> str:
    """``@``, a name relative to the zone, or an absolute name inside it (final dot) ->
    the relative name in lowercase (``@`` for the apex). Wildcards: ``*`` as first label."""
    if not isinstance(value, str):
        raise ValidationError("Give the record's name, or @ for the zone itself.")
    text = value.strip()
    if CONTROL.search(text) or " " in text:
        raise ValidationError("A record name has no spaces or control characters.")
    if text in ("", "@"):
        return "@"
    origin = origin_of(zone_name)
    if text.endswith("."):
        absolute = _idna(text.rstrip(".")) + "."
        name = dns.name.from_text(absolute)
        if not name.is_subdomain(origin):
            raise ValidationError(f"{text} is not inside the zone {zone_name}.")
        relative = name.relativize(origin).to_text()
        text = "@" if relative == "@" else relative
        if text == "@":
            return "@"
    else:
        text = _idna(text)
    labels = text.split(".")
    for i, label in enumerate(labels):
        if label == "*" and i == 0:
            continue
        if len(label) > 63:
            raise ValidationError(f"The label {label[:20]}... is longer than 63 characters.")
        if not LABEL.fullmatch(label):
            raise ValidationError(
                f"{label!r} is not a valid label: letters, digits, hyphens and underscores "
                "(and * alone as the first label)."
            )
    if len(text) + 1 + len(zone_name) > 253:
        raise ValidationError("The full name is longer than 253 characters.")
    return text


def absolute_name(name: str, zone_name: str) -> dns.name.Name:
    origin = origin_of(zone_name)
    return origin if name == "@" else dns.name.from_text(name, origin=origin)


def _split_txt(text: str) -> str:
    """A TXT value typed as plain text (no quotes) -> quoted strings of at most 255 bytes
    each (a TXT string's limit), split on character boundaries."""
    chunks, current = [], b""
    for ch in text:
        b = ch.encode()
        if len(current) + len(b) > 255:
            chunks.append(current)
            current = b""
        current += b
    chunks.append(current)

    def quote(chunk: bytes) -> str:
        body = chunk.decode().replace("\\", "\\\\").replace('"', '\\"')
        return f'"{body}"'

    return " ".join(quote(c) for c in chunks)


def parse_content(rdtype: str, content: str, zone_name: str) -> dns.rdata.Rdata:
    """Parse one record's content as a nameserver would; ValidationError with dnspython's
    words otherwise."""
    if rdtype not in RECORD_TYPES:
        raise ValidationError(f"{rdtype!r} is not a record type the panel manages.")
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("Give the record's content.")
    if CONTROL.search(content):
        raise ValidationError("Record content is one line without control characters.")
    text = content.strip()
    if rdtype == "TXT" and not text.startswith('"'):
        text = _split_txt(text)
    try:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rdtype),
            text,
            origin=origin_of(zone_name),
            relativize=False,
        )
    except dns.exception.SyntaxError as exc:
        raise ValidationError(f"Not a valid {rdtype} record: {exc}") from exc
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise ValidationError(f"Not a valid {rdtype} record: {exc}") from exc
    return rdata


def normalise_content(rdtype: str, content: str, zone_name: str) -> str:
    """The canonical text of a record's content (names absolute, dnspython's spelling)."""
    rdata = parse_content(rdtype, content, zone_name)
    return rdata.to_text(origin=None, relativize=False)


def validate_ttl(value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TTL:
        raise ValidationError(f"A TTL is a whole number of seconds from 0 to {MAX_TTL}.")


# -- reverse zones ------------------------------------------------------------------------
REVERSE_SUFFIXES = ("in-addr.arpa", "ip6.arpa")
REVERSE_TYPES = {"PTR", "NS", "CNAME", "TXT"}


def is_reverse(zone_name: str) -> bool:
    return zone_name.endswith(REVERSE_SUFFIXES)


def reverse_zone_for(network: str) -> str:
    """The reverse zone of an IP range: ``10.1.2.0/24`` -> ``2.1.10.in-addr.arpa``,
    ``2001:db8:5::/48`` -> ``5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa``. A zone holds whole labels,
    so the prefix is a multiple of 8 (IPv4) or 4 (IPv6)."""
    import ipaddress

    try:
        net = ipaddress.ip_network(str(network).strip(), strict=True)
    except ValueError as exc:
        raise ValidationError(f"{network!r} is not an IP range such as 10.1.2.0/24: {exc}") from exc
    step = 8 if net.version == 4 else 4
    if net.prefixlen % step or not 0 < net.prefixlen < net.max_prefixlen:
        raise ValidationError(
            f"A reverse zone covers a prefix that is a multiple of {step} "
            f"(such as /{24 if net.version == 4 else 48}), shorter than a single address."
        )
    full = dns.reversename.from_address(str(net.network_address)).to_text(omit_final_dot=True)
    labels = full.split(".")
    keep = net.prefixlen // step
    suffix = 2  # in-addr.arpa / ip6.arpa
    return ".".join(labels[len(labels) - suffix - keep :])


def reverse_record_name(value: str, zone_name: str) -> str:
    """In a reverse zone a record may be named by its address (``10.1.2.7``): the name
    relative to the zone (``7``). Other names pass through unchanged."""
    import ipaddress

    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return value
    name = dns.reversename.from_address(str(address))
    origin = origin_of(zone_name)
    if not name.is_subdomain(origin):
        raise ValidationError(f"{address} is not inside the reverse zone {zone_name}.")
    return name.relativize(origin).to_text()


def check_reverse_record(zone_name: str, name: str, rdtype: str, content: str) -> dict:
    """Errors per field for a record of a reverse zone: PTR (and NS for delegations, CNAME
    for RFC 2317 classless delegation, TXT); PTR names are addresses inside the zone and
    point at a full hostname."""
    errors: dict[str, list[str]] = {}
    if rdtype not in REVERSE_TYPES:
        return {"type": [f"A reverse zone holds {', '.join(sorted(REVERSE_TYPES))} records."]}
    if rdtype != "PTR":
        return errors
    labels = [] if name == "@" else name.split(".")
    depth = len(origin_of(zone_name).labels) - 1 - 2 + len(labels)  # address labels in all
    if zone_name.endswith("in-addr.arpa"):
        ok = all(lab.isdigit() and int(lab) <= 255 and str(int(lab)) == lab for lab in labels)
        if not ok or depth != 4:
            errors["name"] = ["A PTR name here is an IPv4 address inside the zone (10.1.2.7)."]
    else:
        ok = all(len(lab) == 1 and lab in "0123456789abcdef" for lab in labels)
        if not ok or depth != 32:
            errors["name"] = ["A PTR name here is an IPv6 address inside the zone."]
    if content.rstrip(".").endswith(zone_name):
        errors["content"] = ["A PTR points at a hostname: write it in full with a final dot."]
    return errors
