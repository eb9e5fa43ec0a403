"""The DNSSEC switch without nameservers running: who may use it, what it starts, and the
DS records on the zone's page and in the API (signing for real:
tests/integration/test_dns_dnssec.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEntry, Operation
from dns import services
from dns.models import Nameserver, NameserverGroup, Zone
from tests.conftest import login

pytestmark = pytest.mark.django_db

DS = (
    "example.com. IN DS 31044 13 2 59ca39c925c07d2ccd7956dd0578f396b3b538e04958c15e93aa170fdf050887"
)


@pytest.fixture
def zone(customer):
    group = NameserverGroup.objects.create(name="g")
    for host in ("ns1.example.net", "ns2.example.net"):
        Nameserver.objects.create(group=group, hostname=host, host="127.0.0.1", kind="powerdns")
    return Zone.objects.create(name="example.com", owner=customer, group=group)


def test_sign_starts_one_operation_per_nameserver_and_audits(zone, customer):
    ops = services.do_set_dnssec(zone, actor=customer, data={"sign": True})
    assert [op.kind for op in ops] == ["dns.sign", "dns.sign"]
    assert {op.lock_key for op in ops} == {ns.lock_key for ns in Nameserver.objects.all()}
    zone.refresh_from_db()
    assert zone.dnssec
    entry = AuditEntry.objects.get(action="zone.dnssec")
    assert entry.changes == {"dnssec": [False, True]}
    Zone.objects.filter(pk=zone.pk).update(ds_records=DS)
    (op,) = services.do_set_dnssec(zone, actor=customer, data={"sign": False})[:1]
    assert op.kind == "dns.unsign"
    zone.refresh_from_db()
    assert not zone.dnssec and zone.ds_list == []  # no DS shown for an unsigned zone


def test_bad_requests_are_refused(zone, customer):
    with pytest.raises(ValidationError) as got:
        services.do_set_dnssec(zone, actor=customer, data={"sign": "yes"})
    assert "sign" in got.value.message_dict
    with pytest.raises(ValidationError):
        services.do_set_dnssec(zone, actor=customer, data={"sign": True, "algorithm": 8})
    alone = Zone.objects.create(name="alone.example", owner=customer)
    with pytest.raises(ValidationError) as got:
        services.do_set_dnssec(alone, actor=customer, data={"sign": True})
    assert "no nameservers" in got.value.message_dict["sign"][0]
    assert not Operation.objects.exists()


def test_api_and_page_show_the_ds_records(zone, customer, mallory):
    Zone.objects.filter(pk=zone.pk).update(dnssec=True, ds_records=DS)
    client = login(customer)
    data = client.get(f"/api/v1/zones/{zone.uuid}/").json()
    assert data["dnssec"] is True and data["ds"] == [DS]
    page = client.get(f"/dns/{zone.uuid}/")
    assert DS.encode() in page.content and b"Unsign" in page.content
    assert (
        login(mallory)
        .post(
            f"/api/v1/zones/{zone.uuid}/dnssec/", {"sign": False}, content_type="application/json"
        )
        .status_code
        == 404
    )
    assert login(mallory).post(f"/dns/{zone.uuid}/dnssec/", {"sign": "0"}).status_code == 404
    resp = client.post(
        f"/api/v1/zones/{zone.uuid}/dnssec/", {"sign": False}, content_type="application/json"
    )
    assert resp.status_code == 202 and [o["kind"] for o in resp.json()] == ["dns.unsign"] * 2
    resp = client.post(f"/dns/{zone.uuid}/dnssec/", {"sign": "1"})
    assert resp.status_code == 302
    zone.refresh_from_db()
    assert zone.dnssec
