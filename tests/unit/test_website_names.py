"""A site's names: IDN to punycode (stored ASCII, shown in Unicode), aliases editable after
creation through the service, the API and the portal, and a name claimed by another site
refused with a clear message that does not say whose it is."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.models import DirtyUnit, Server
from tests.conftest import login
from websites import services
from websites.models import Website
from websites.names import normalize_aliases, to_ascii, to_unicode

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(reseller):
    return Server.objects.create(name="web", address="93.184.216.34", owner=reseller)


@pytest.fixture
def site(server, customer):
    return Website.objects.create(domain="shop.example.com", server=server, owner=customer)


def test_idn_to_ascii_and_back():
    assert to_ascii("Bücher.Example.") == "xn--bcher-kva.example"
    assert to_unicode("xn--bcher-kva.example") == "bücher.example"
    assert to_ascii("XN--BCHER-KVA.example") == "xn--bcher-kva.example"
    assert to_unicode("plain.example") == "plain.example"
    for bad in ("a;b.example", "x.com{", "xn--zz.example", "bad..example", "-x.example", ""):
        with pytest.raises(ValidationError):
            to_ascii(bad)
    assert normalize_aliases("a.example", "www.a.example a.example WWW.A.EXAMPLE ü.example") == (
        "www.a.example xn--tda.example"
    )


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_checked_ascii_name_or_refused(text):
    try:
        value = to_ascii(text)
    except ValidationError:
        return
    assert value.isascii() and value == value.lower()
    assert not set(value) & set(" ;{}$\"'\\\n\t/")


def test_create_with_unicode_names(server, customer, reseller):
    site = services.do_create_website(
        actor=reseller,
        data={
            "domain": "Bücher.example",
            "aliases": "www.bücher.example",
            "server": server,
            "owner": customer,
        },
    )
    assert site.domain == "xn--bcher-kva.example" and site.aliases == "www.xn--bcher-kva.example"
    assert site.names_display == ["bücher.example", "www.bücher.example"]


def test_aliases_change_after_creation_and_are_applied(site, customer):
    services.do_update_website(site, actor=customer, data={"aliases": "www.shop.example.com"})
    site.refresh_from_db()
    assert site.aliases == "www.shop.example.com" and site.status == "pending"
    assert site.unit in set(DirtyUnit.objects.values_list("unit", flat=True))


def test_a_name_of_another_site_is_refused(site, server, mallory, customer):
    services.do_update_website(site, actor=customer, data={"aliases": "www.shop.example.com"})
    other = Website.objects.create(domain="other.example.com", server=server, owner=mallory)
    for aliases in ("www.shop.example.com", "shop.example.com"):
        with pytest.raises(ValidationError) as caught:
            services.do_update_website(other, actor=mallory, data={"aliases": aliases})
        message = " ".join(caught.value.message_dict["aliases"])
        assert "is already a name of another website" in message
        assert "customer@" not in message
    with pytest.raises(ValidationError) as caught:
        services.do_create_website(
            actor=customer.reseller,
            data={"domain": "www.shop.example.com", "server": server, "owner": customer},
        )
    assert "already a name of another website" in " ".join(caught.value.message_dict["domain"])
    other.refresh_from_db()
    assert other.aliases == ""


def test_api_and_portal_edit_aliases(site, customer, mallory):
    api = login(customer)
    resp = api.patch(
        f"/api/v1/websites/{site.uuid}/",
        {"aliases": "www.shop.example.com shöp.example.com"},
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.content
    site.refresh_from_db()
    assert site.aliases == "www.shop.example.com xn--shp-tna.example.com"
    resp = api.patch(
        f"/api/v1/websites/{site.uuid}/", {"aliases": "a;b"}, content_type="application/json"
    )
    assert resp.status_code == 400 and "aliases" in resp.json()

    page = api.get(f"/websites/{site.uuid}/")
    assert "shöp.example.com" in page.content.decode()
    resp = api.post(f"/websites/{site.uuid}/aliases/", {"aliases": "m.shop.example.com"})
    assert resp.status_code == 302
    site.refresh_from_db()
    assert site.aliases == "m.shop.example.com"
    # Someone who cannot see the site cannot change it (404).
    assert (
        login(mallory).post(f"/websites/{site.uuid}/aliases/", {"aliases": ""}).status_code == 404
    )


def test_a_new_site_gets_its_address_records_in_its_owners_zone(
    server, customer, reseller, mallory
):
    """The customer's zone (served by the panel) gets A records for the new site's names
    that have no address yet; a name with a CNAME keeps it; another customer's zone and
    names in no zone of ours are left alone."""
    from dns import services as dns_services
    from dns.models import Nameserver, NameserverGroup, Record

    group = NameserverGroup.objects.create(name="ns", is_default=True)
    Nameserver.objects.create(
        group=group, hostname="ns1.example.net", host="127.0.0.1", kind="powerdns"
    )
    mine = dns_services.do_create_zone(actor=customer, data={"name": "shop.example"})
    dns_services.do_create_record(
        mine,
        actor=customer,
        data={"name": "blog", "type": "CNAME", "content": "elsewhere.example.", "ttl": None},
    )
    theirs = dns_services.do_create_zone(actor=mallory, data={"name": "theirs.example"})
    site = services.do_create_website(
        actor=reseller,
        data={
            "domain": "shop.example",
            "aliases": "www.shop.example blog.shop.example www.theirs.example other.example",
            "server": server,
            "owner": customer,
        },
    )
    assert site.pk
    got = set(Record.objects.filter(zone=mine).values_list("name", "type", "content"))
    assert got == {
        ("@", "A", "93.184.216.34"),
        ("www", "A", "93.184.216.34"),
        ("blog", "CNAME", "elsewhere.example."),
    }
    assert not Record.objects.filter(zone=theirs).exists()
    mine.refresh_from_db()
    assert mine.status == "pending"  # to be published to the group's nameserver
