"""DNSSEC against real nameservers: a zone served by a private BIND (dnssec-policy with
inline signing, switched by rndc delzone/addzone) and a private PowerDNS (cryptokeys and
rectify through its API) is signed, both answer with RRSIGs (asked with dnspython and the
DO bit), the DS records the panel shows equal what ``dnssec-dsfromkey`` makes of the served
DNSKEYs, a change is still published and signed, and unsigning removes the signatures."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest

from dns import services
from dns.models import NameserverGroup
from tests.integration.conftest import need
from tests.integration.dns_servers import remove_powerdns, start_panel_bind, start_powerdns
from tests.integration.test_dns_publish import bind_nameserver, pdns_nameserver

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def bind():
    from tests.integration.bind import remove

    daemon = start_panel_bind(Path(tempfile.mkdtemp(prefix="uhp-dnssec-bind-")))
    yield daemon
    remove(daemon)


@pytest.fixture(scope="module")
def pdns():
    server = start_powerdns(Path(tempfile.mkdtemp(prefix="uhp-dnssec-pdns-")))
    yield server
    remove_powerdns(server)


def answer(daemon, qname: str, rdtype: str) -> dns.message.Message:
    q = dns.message.make_query(qname, rdtype, want_dnssec=True)
    q.flags &= ~dns.flags.RD
    return dns.query.tcp(q, daemon.host, port=daemon.port, timeout=3)


def signatures(daemon, qname: str, rdtype: str) -> list:
    """The RRSIGs covering ``rdtype`` in the server's answer for ``qname``."""
    return [
        sig
        for rrset in answer(daemon, qname, rdtype).answer
        if rrset.rdtype == dns.rdatatype.RRSIG
        for sig in rrset
        if sig.type_covered == dns.rdatatype.from_text(rdtype)
    ]


def dsfromkey(daemon, zone: str, tmp: Path) -> set[str]:
    """What BIND's own tool makes of the DNSKEYs the server serves (SHA-256)."""
    keys = answer(daemon, zone + ".", "DNSKEY").find_rrset(
        dns.message.ANSWER, dns.name.from_text(zone + "."), 1, dns.rdatatype.DNSKEY
    )
    path = tmp / f"{daemon.port}.keys"
    path.write_text(keys.to_text() + "\n")
    done = subprocess.run(
        [need("dnssec-dsfromkey"), "-2", "-f", str(path), zone],
        capture_output=True,
        text=True,
        check=True,
    )
    return {" ".join(line.upper().split()) for line in done.stdout.splitlines() if line.strip()}


def test_sign_show_ds_change_and_unsign(bind, pdns, customer, admin_user, q_sync, tmp_path):
    group = NameserverGroup.objects.create(name="signers")
    bind_nameserver(bind, group)
    pdns_nameserver(pdns, group)
    zone = services.do_create_zone(
        actor=admin_user, data={"name": "signed.test", "owner": customer, "group": group}
    )
    services.do_create_record(
        zone, actor=customer, data={"name": "www", "type": "A", "content": "10.0.0.1"}
    )
    for daemon in (bind, pdns):
        assert signatures(daemon, "www.signed.test.", "A") == []

    ops = services.do_set_dnssec(zone, actor=customer, data={"sign": True})
    for op in ops:
        op.refresh_from_db()
    assert [op.state for op in ops] == ["succeeded", "succeeded"], [op.error for op in ops]
    zone.refresh_from_db()
    assert zone.dnssec
    for daemon in (bind, pdns):
        assert signatures(daemon, "www.signed.test.", "A"), daemon
        assert signatures(daemon, "signed.test.", "SOA"), daemon

    # One DS per signer, each what dnssec-dsfromkey computes from that server's DNSKEYs.
    expected = dsfromkey(bind, "signed.test", tmp_path) | dsfromkey(pdns, "signed.test", tmp_path)
    assert len(zone.ds_list) == 2
    assert {" ".join(line.upper().split()) for line in zone.ds_list} == expected  # hex case

    # Records still publish to a signed zone, and come back signed.
    services.do_create_record(
        zone, actor=customer, data={"name": "new", "type": "A", "content": "10.0.0.2"}
    )
    zone.refresh_from_db()
    assert zone.status == "published", zone.status_message
    for daemon in (bind, pdns):
        got = answer(daemon, "new.signed.test.", "A")
        assert [r.to_text() for rrset in got.answer if rrset.rdtype == 1 for r in rrset] == [
            "10.0.0.2"
        ]
        assert signatures(daemon, "new.signed.test.", "A"), daemon
        # The denial chain knows the new name (PowerDNS rectifies a signed zone per change):
        # a name sorting just after it is denied by the NSEC record starting at it.
        denial = answer(daemon, "newer.signed.test.", "A")
        nsec = [r for r in denial.authority if r.rdtype == dns.rdatatype.NSEC]
        assert "new.signed.test." in [r.name.to_text() for r in nsec], (daemon, denial)

    ops = services.do_set_dnssec(zone, actor=customer, data={"sign": False})
    for op in ops:
        op.refresh_from_db()
    assert [op.state for op in ops] == ["succeeded", "succeeded"], [op.error for op in ops]
    zone.refresh_from_db()
    assert not zone.dnssec and zone.ds_list == []
    for daemon in (bind, pdns):
        assert signatures(daemon, "www.signed.test.", "A") == [], daemon
        assert signatures(daemon, "signed.test.", "SOA") == [], daemon
        got = answer(daemon, "new.signed.test.", "A")
        assert any(rrset.rdtype == 1 for rrset in got.answer)  # the data is still there


def test_a_refused_signing_fails_with_the_servers_words(bind, customer, admin_user, q_sync):
    """BIND without the zone (removed behind the panel's back): rndc's own words."""
    group = NameserverGroup.objects.create(name="lonely")
    bind_nameserver(bind, group)
    zone = services.do_create_zone(
        actor=admin_user, data={"name": "gone.test", "owner": customer, "group": group}
    )
    bind.rndc("delzone", "gone.test")
    (op,) = services.do_set_dnssec(zone, actor=customer, data={"sign": True})
    op.refresh_from_db()
    assert op.state == "failed"
    assert "rndc sync" in op.error and "not found" in op.error
    zone.refresh_from_db()
    assert zone.ds_list == []
