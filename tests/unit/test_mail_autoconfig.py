"""Thunderbird's autoconfig and Outlook's Autodiscover: public (no login), answering only
for a live mail domain the panel hosts, with its server's mail host and ports; strict
addresses, escaped XML, no DTD in a request."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: N817

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from mail.autoconfig import OUTLOOK, RESPONSE
from mail.models import MailDomain
from servers.models import Server

pytestmark = pytest.mark.django_db
REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
    'requestschema/2006"><Request><EMailAddress>{}</EMailAddress><AcceptableResponseSchema>'
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    "</AcceptableResponseSchema></Request></Autodiscover>"
)


@pytest.fixture
def domain(reseller):
    server = Server.objects.create(
        name="mx", address="192.0.2.10", owner=reseller,
        profile={"mail_hostname": "mx.example.com", "submission_listen": "127.0.0.1:2587",
                 "imap_listen": "1143"},
    )  # fmt: skip
    return MailDomain.objects.create(owner=reseller, server=server, domain="shop.example.com")


def autodiscover(body: str | bytes):
    return Client().post(
        "/autodiscover/autodiscover.xml", body, content_type="text/xml; charset=utf-8"
    )


@pytest.mark.parametrize(
    "url", ["/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"]
)
def test_thunderbird_gets_the_servers_host_and_ports_without_a_login(domain, url):
    resp = Client().get(url, {"emailaddress": "Info@Shop.Example.com"})
    assert resp.status_code == 200 and resp["Content-Type"].startswith("application/xml")
    root = ET.fromstring(resp.content)
    provider = root.find("emailProvider")
    assert provider.get("id") == "shop.example.com"
    assert provider.findtext("domain") == "shop.example.com"
    imap, smtp = provider.find("incomingServer"), provider.find("outgoingServer")
    assert (imap.get("type"), imap.findtext("hostname"), imap.findtext("port")) == (
        "imap", "mx.example.com", "1143")  # fmt: skip
    assert (smtp.get("type"), smtp.findtext("hostname"), smtp.findtext("port")) == (
        "smtp", "mx.example.com", "2587")  # fmt: skip
    assert imap.findtext("socketType") == smtp.findtext("socketType") == "STARTTLS"
    assert imap.findtext("username") == "%EMAILADDRESS%"


def test_outlook_gets_imap_and_smtp_for_the_address(domain):
    resp = autodiscover(REQUEST.format("info@shop.example.com"))
    assert resp.status_code == 200
    root = ET.fromstring(resp.content)
    account = root.find(f"{{{OUTLOOK}}}Response/{{{OUTLOOK}}}Account")
    assert root.tag == f"{{{RESPONSE}}}Autodiscover" and account is not None
    protocols = {
        p.findtext(f"{{{OUTLOOK}}}Type"): p for p in account.findall(f"{{{OUTLOOK}}}Protocol")
    }
    assert set(protocols) == {"IMAP", "SMTP"}
    for kind, port in (("IMAP", "1143"), ("SMTP", "2587")):
        p = protocols[kind]
        assert p.findtext(f"{{{OUTLOOK}}}Server") == "mx.example.com"
        assert p.findtext(f"{{{OUTLOOK}}}Port") == port
        assert p.findtext(f"{{{OUTLOOK}}}LoginName") == "info@shop.example.com"
        assert p.findtext(f"{{{OUTLOOK}}}Encryption") == "TLS"
    assert Client().get("/autodiscover/autodiscover.xml").status_code == 405


@pytest.mark.parametrize(
    "address",
    [
        "info@other.example.com",  # not a domain the panel hosts
        "info@example.com",  # its parent neither
        "info@shop.example.com.evil.test",
        "in fo@shop.example.com",
        'in"fo@shop.example.com',
        "info@shop.example.com\n<x>",
        "<b>@shop.example.com",
        "info@@shop.example.com",
        ".info@shop.example.com",
        "shop.example.com",
        "",
        "x" * 65 + "@shop.example.com",
    ],
)
def test_anything_but_a_hosted_address_is_404(domain, address):
    assert Client().get("/mail/config-v1.1.xml", {"emailaddress": address}).status_code == 404
    escaped = address.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert autodiscover(REQUEST.format(escaped)).status_code == 404


def test_a_suspended_domain_or_one_without_a_mail_host_is_404(domain):
    url = "/mail/config-v1.1.xml?emailaddress=info@shop.example.com"
    MailDomain.objects.filter(pk=domain.pk).update(suspended=True)
    assert Client().get(url).status_code == 404
    MailDomain.objects.filter(pk=domain.pk).update(suspended=False)
    Server.objects.filter(pk=domain.server_id).update(profile={})  # an IP address: no host
    assert Client().get(url).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]>' + REQUEST.format("&x;"),
        REQUEST.format("info@shop.example.com").encode("utf-16"),
        REQUEST.format("info@shop.example.com") + " " * 9000,
        "<Autodiscover>",
        "not xml",
        "<Autodiscover/>",
    ],
)
def test_autodiscover_refuses_dtds_other_encodings_and_junk(domain, body):
    assert autodiscover(body).status_code == 404


def test_the_answer_is_escaped_and_costs_the_same_queries(domain):
    """A mail host is a strict DNS name, so nothing needing escapes can reach the XML from
    the profile; the answer is built by ElementTree all the same. Flat query count."""
    client = Client()
    url = "/mail/config-v1.1.xml?emailaddress=info@shop.example.com"
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    first = len(ctx)
    for n in range(5):
        MailDomain.objects.create(
            owner=domain.owner, server=domain.server, domain=f"d{n}.example.com"
        )
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    assert len(ctx) == first <= 3


@pytest.mark.parametrize(
    "host", ["autoconfig.shop.example.com", "AutoDiscover.Shop.Example.com:443"]
)
def test_the_autoconfig_host_names_reach_the_endpoints_without_listing_them(domain, settings, host):
    """Clients ask autoconfig./autodiscover.<domain> (CNAMEs to PANEL_PUBLIC_HOST): those
    Hosts pass Django's host check for the autoconfig paths only."""
    settings.ALLOWED_HOSTS = ["panel.example.net"]
    settings.PANEL_PUBLIC_HOST = "panel.example.net"
    client = Client(HTTP_HOST=host)
    resp = client.get("/mail/config-v1.1.xml", {"emailaddress": "info@shop.example.com"})
    assert resp.status_code == 200
    assert ET.fromstring(resp.content).find("emailProvider").get("id") == "shop.example.com"
    resp = client.post(
        "/autodiscover/autodiscover.xml",
        REQUEST.format("info@shop.example.com"),
        content_type="text/xml; charset=utf-8",
    )
    assert resp.status_code == 200
    assert client.get("/accounts/login/").status_code == 400  # the rest of the panel: not
    assert client.get("/mail/").status_code == 400


@pytest.mark.parametrize(
    "host", ["shop.example.com", "autoconfig.", "autoconfig.bad_name.example", "evil.example"]
)
def test_other_hosts_still_meet_allowed_hosts(domain, settings, host):
    settings.ALLOWED_HOSTS = ["panel.example.net"]
    settings.PANEL_PUBLIC_HOST = "panel.example.net"
    resp = Client(HTTP_HOST=host).get(
        "/mail/config-v1.1.xml", {"emailaddress": "info@shop.example.com"}
    )
    assert resp.status_code == 400


def test_without_a_panel_host_the_names_are_not_let_through(domain, settings):
    settings.ALLOWED_HOSTS = ["panel.example.net"]
    settings.PANEL_PUBLIC_HOST = ""
    resp = Client(HTTP_HOST="autoconfig.shop.example.com").get(
        "/mail/config-v1.1.xml", {"emailaddress": "info@shop.example.com"}
    )
    assert resp.status_code == 400
