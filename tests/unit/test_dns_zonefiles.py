"""Zone file import (all or nothing, errors with their line) and export (round trip)."""

from __future__ import annotations

import dns.zone
import pytest
from django.core.exceptions import ValidationError

from dns import services
from dns.models import Record
from dns.zonefiles import do_import_zone_file, export_zone_file

pytestmark = pytest.mark.django_db

GOOD = """$ORIGIN example.com.
$TTL 3600
@       IN SOA ns1.example.net. hostmaster.example.com. 1 3600 600 1209600 300
@       IN NS  ns1.example.net.
@       IN MX  10 mail
@   300 IN TXT "v=spf1 mx -all"
www     IN A   10.0.0.1
www     IN AAAA 2001:db8::1
mail    IN A   10.0.0.2
ftp     IN CNAME www
*.dev   IN A   10.0.0.3
_sip._tcp IN SRV 0 5 5060 sip.example.net.
@       IN CAA 0 issue "letsencrypt.org"
"""


@pytest.fixture
def zone(customer):
    return services.do_create_zone(actor=customer, data={"name": "example.com"})


def test_import_then_export_round_trips(zone, customer):
    result = do_import_zone_file(zone, GOOD, actor=customer)
    assert result.added == 9 and {"@ SOA", "@ NS"} <= set(result.skipped)
    out = export_zone_file(zone)
    before = dns.zone.from_text(GOOD, origin="example.com.", relativize=False)
    after = dns.zone.from_text(out, origin="example.com.", relativize=False, check_origin=False)

    def records(z):
        return {
            (str(n), rds.rdtype, rds.ttl, frozenset(rds))
            for n, rds in z.iterate_rdatasets()
            if rds.rdtype not in (6, 2) or str(n) != "example.com."
        }

    assert records(before) == records(after)


@pytest.mark.parametrize(
    "text,words",
    [
        ("www IN A 10.0.0.1\nbad IN A 300.1.1.1\nok IN A 10.0.0.2\n", "Line 2"),
        ("$TTL 60\nwww IN A 10.0.0.1\nmx IN MX mail\n", "Line 3"),
        ("$TTL 60\nwww IN A 10.0.0.1\nwww IN CNAME other.example.net.\n", "CNAME"),
        ("$TTL 60\nx IN HINFO a b\n", "does not manage HINFO"),
        ("$TTL 60\nwww.other.org. IN A 10.0.0.1\n", "not inside"),
        ("$TTL 60\n" + "a" * 64 + " IN A 10.0.0.1\n", "Line 2"),
        ("$TTL 60\n$INCLUDE /etc/passwd\n", "Line 2"),
        ("$TTL 60\nwww IN A 10.0.0.1\x00\n", "control character"),
    ],
)
def test_bad_files_import_nothing(zone, customer, text, words):
    services.do_create_record(
        zone, actor=customer, data={"name": "keep", "type": "A", "content": "10.9.9.9"}
    )
    with pytest.raises(ValidationError) as err:
        do_import_zone_file(zone, text, actor=customer)
    assert words in " ".join(err.value.messages), err.value.messages
    assert list(Record.objects.filter(zone=zone).values_list("name", flat=True)) == ["keep"]


def test_merge_refuses_conflicts_with_what_is_there(zone, customer):
    services.do_create_record(
        zone, actor=customer, data={"name": "www", "type": "A", "content": "10.0.0.1"}
    )
    with pytest.raises(ValidationError):
        do_import_zone_file(
            zone, "$TTL 60\nwww IN CNAME x.example.net.\n", actor=customer, replace=False
        )
    result = do_import_zone_file(zone, "$TTL 60\nw2 IN A 10.0.0.5\n", actor=customer, replace=False)
    assert result.added == 1 and Record.objects.filter(zone=zone).count() == 2


MIXED = """$TTL 600
@ IN MX 10 mail
@ 300 IN TXT "v=spf1 mx -all" ; a comment
www IN 120 A 10.0.0.1
    IN AAAA 2001:db8::1
www.example.com. IN A 10.0.0.9
mail 60 IN A 10.0.0.2
mail 30 IN A 10.0.0.3
ftp IN CNAME www
_sip._tcp IN SRV 0 5 5060 sip
$ORIGIN sub.example.com.
deep IN A 10.0.0.4
@ IN TXT "in sub"
"""


def test_fast_reader_reads_what_dnspythons_reader_reads(zone):
    """The line reader (imports of 50,000 records in seconds) and dnspython's reader give
    the same records; a file the line reader leaves alone (parentheses) still reads."""
    from dns.validation import origin_of
    from dns.zonefiles import FastParsed, _parse, parse_zone_file, records_of

    fast = parse_zone_file(zone, MIXED)
    assert isinstance(fast, FastParsed)
    slow = _parse(MIXED, origin_of(zone.name), zone.default_ttl)
    assert sorted(records_of(zone, fast)[0]) == sorted(records_of(zone, slow)[0])
    assert ("mail", "A", 30, "10.0.0.3") in records_of(zone, fast)[0]  # smallest TTL wins
    multi = '$TTL 60\nx IN TXT ( "a"\n "b" )\n'
    assert not isinstance(parse_zone_file(zone, multi), FastParsed)


def test_import_writes_and_publishes_only_what_changed(zone, customer):
    from core.models import AuditEntry

    first = do_import_zone_file(zone, MIXED, actor=customer)
    assert first.added == 11
    serial = type(zone).objects.get(pk=zone.pk).serial
    audits = AuditEntry.objects.filter(action="zone.import").count()
    again = do_import_zone_file(zone, MIXED, actor=customer)
    assert (again.added, again.removed) == (0, 0)
    assert type(zone).objects.get(pk=zone.pk).serial == serial  # nothing changed, no serial
    assert AuditEntry.objects.filter(action="zone.import").count() == audits + 1
    changed = MIXED.replace("10.0.0.4", "10.0.0.5").replace("ftp IN CNAME www\n", "")
    third = do_import_zone_file(zone, changed, actor=customer)
    assert (third.added, third.removed) == (1, 2)
    assert not Record.objects.filter(zone=zone, name="ftp").exists()
    assert Record.objects.get(zone=zone, name="deep.sub").content == "10.0.0.5"
