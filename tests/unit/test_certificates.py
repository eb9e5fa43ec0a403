"""Certificates without programs: upload checks, the vhost's TLS pieces, renewal selection,
the portal pages and the API's visibility. (Issuing against a real ACME server, installing
and serving: tests/integration/test_certificates.py.)"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from core.models import Operation
from servers.models import Server
from tests.conftest import login
from websites.certificates import services, tasks
from websites.certificates.models import Certificate
from websites.models import Website
from websites.vhost import render_vhost

pytestmark = pytest.mark.django_db


def make_pair(names, *, days=(-1, 60), key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def site(customer, reseller):
    server = Server.objects.create(name="web", address="93.184.216.34", owner=reseller)
    return Website.objects.create(
        domain="shop.example.com", aliases="www.shop.example.com", server=server, owner=customer
    )


class TestUpload:
    def test_matching_pair_is_stored_encrypted_and_installed_by_an_operation(self, site, customer):
        key, chain = make_pair(["shop.example.com", "www.shop.example.com"])
        op = services.do_upload_certificate(
            site, actor=customer, private_key=key, certificate=chain
        )
        cert = Certificate.objects.get(website=site)
        assert op.kind == "certificate.install" and op.lock_key == site.server.lock_key
        assert cert.source == "upload" and cert.status == "pending"
        assert cert.not_after > timezone.now() + dt.timedelta(days=59)
        assert cert.names == ["shop.example.com", "www.shop.example.com"]
        assert cert.private_key.startswith("-----BEGIN PRIVATE KEY-----")
        with connection.cursor() as cur:  # encrypted at rest
            cur.execute("SELECT private_key FROM certificates_certificate WHERE id = %s", [cert.pk])
            assert "PRIVATE KEY" not in cur.fetchone()[0]

    def test_mismatched_key_is_refused(self, site, customer):
        _key, chain = make_pair(["shop.example.com"])
        other_key, _ = make_pair(["shop.example.com"])
        with pytest.raises(ValidationError) as got:
            services.do_upload_certificate(
                site, actor=customer, private_key=other_key, certificate=chain
            )
        assert got.value.message_dict["private_key"] == [
            "The private key does not belong to the certificate."
        ]
        assert not Certificate.objects.filter(website=site).exists()

    def test_expired_is_refused_with_its_date(self, site, customer):
        key, chain = make_pair(["shop.example.com"], days=(-90, -1))
        with pytest.raises(ValidationError, match="expired on"):
            services.do_upload_certificate(site, actor=customer, private_key=key, certificate=chain)

    def test_other_name_and_garbage_are_refused(self, site, customer):
        key, chain = make_pair(["other.example.org"])
        with pytest.raises(ValidationError, match="does not cover shop.example.com"):
            services.do_upload_certificate(site, actor=customer, private_key=key, certificate=chain)
        with pytest.raises(ValidationError, match="not PEM"):
            services.do_upload_certificate(site, actor=customer, private_key=key, certificate="x")
        with pytest.raises(ValidationError, match="unencrypted PEM key"):
            services.do_upload_certificate(site, actor=customer, private_key="x", certificate=chain)


class TestVhost:
    def test_every_site_serves_the_challenge_and_tls_once_installed(self, site):
        text, _rev = render_vhost(site, "80", "/srv/www")
        assert "location ^~ /.well-known/acme-challenge/ {" in text
        assert "ssl" not in text
        key, chain = make_pair(site.names)
        cert = Certificate.objects.create(
            website=site,
            domains=" ".join(site.names),
            private_key=key,
            fullchain=chain,
            fingerprint="ab" * 32,
        )
        text2, _ = render_vhost(site, "80", "/srv/www")
        assert "ssl" not in text2  # the files are not on the server yet
        cert.installed = True
        cert.save()
        text3, _ = render_vhost(site, "80", "/srv/www")
        assert "listen 443 ssl http2;" in text3 and "listen 80;" in text3
        assert "ssl_certificate_key /etc/nginx/panel-tls/shop.example.com.key;" in text3
        site.options = {"https_redirect": True, "hsts_max_age": 300}
        text4, _ = render_vhost(site, "80", "/srv/www")
        main, redirect = text4.split("return 301 https://$host$request_uri;")[0].rsplit(
            "server {", 1
        )
        assert 'Strict-Transport-Security "max-age=300"' in text4
        assert "listen 80;" in redirect and "listen 80;" not in main.split("server {", 2)[1]
        assert text4.count("/.well-known/acme-challenge/") == text4.count("server {")
        # Suspended: the suspension page answers on HTTPS too, never another site's block.
        site.suspended = True
        text5, _ = render_vhost(site, "80", "/srv/www")
        assert "listen 443 ssl http2;" in text5 and "return 503" in text5
        assert "return 301" not in text5 and "Strict-Transport-Security" not in text5


class TestRenewal:
    def test_only_acme_certificates_near_expiry_are_renewed(self, site, customer, settings):
        other = Website.objects.create(domain="b.example.com", server=site.server, owner=customer)
        third = Website.objects.create(domain="c.example.com", server=site.server, owner=customer)
        soon = timezone.now() + dt.timedelta(days=10)
        Certificate.objects.create(website=site, domains="x", not_after=soon)
        Certificate.objects.create(
            website=other, domains="x", not_after=timezone.now() + dt.timedelta(days=80)
        )
        Certificate.objects.create(website=third, domains="x", not_after=soon, source="upload")
        assert tasks.renew_due() == 1
        op = Operation.objects.get(kind="certificate.issue")
        assert op.target_id == str(Certificate.objects.get(website=site).uuid)
        settings.PANEL_ACME_RENEW_DAYS = 5
        assert list(tasks.due_for_renewal()) == []


class TestPortalAndApi:
    def test_tls_page_list_and_upload_errors(self, site, customer):
        client = login(customer)
        page = client.get(f"/websites/certificates/site/{site.uuid}/")
        assert page.status_code == 200 and b"Upload a certificate" in page.content
        _key, chain = make_pair(site.names)
        other_key, _ = make_pair(site.names)
        resp = client.post(
            f"/websites/certificates/site/{site.uuid}/upload/",
            {"certificate": chain, "private_key": other_key},
        )
        assert resp.status_code == 400
        assert b"The private key does not belong to the certificate." in resp.content
        resp = client.post(f"/websites/certificates/site/{site.uuid}/issue/", {"key_type": "rsa"})
        assert resp.status_code == 302 and resp["Location"].startswith("/operations/")
        listing = client.get("/websites/certificates/")
        assert listing.status_code == 200 and b"shop.example.com" in listing.content

    def test_site_page_warns_when_an_upload_no_longer_covers_the_aliases(
        self, site, customer, django_capture_on_commit_callbacks
    ):
        from websites import services as site_services

        key, chain = make_pair(["shop.example.com", "www.shop.example.com"])
        services.do_upload_certificate(site, actor=customer, private_key=key, certificate=chain)
        client = login(customer)
        assert b"tls-uncovered" not in client.get(f"/websites/{site.uuid}/").content
        with django_capture_on_commit_callbacks(execute=False):
            site_services.do_update_website(
                site, actor=customer, data={"aliases": "www.shop.example.com new.example.com"}
            )
        page = client.get(f"/websites/{site.uuid}/").content.decode()
        assert 'data-testid="tls-uncovered"' in page
        assert "does not cover new.example.com" in page and "Upload one that covers" in page
        tls = client.get(f"/websites/certificates/site/{site.uuid}/").content.decode()
        assert "does not cover new.example.com" in tls
        # An upload is the owner's to replace: nothing is ordered for it.
        assert not Operation.objects.filter(kind="certificate.issue").exists()

    def test_acme_certificates_are_ordered_again_for_new_aliases(
        self, site, customer, django_capture_on_commit_callbacks
    ):
        from websites import services as site_services

        key, chain = make_pair(["shop.example.com", "www.shop.example.com"])
        Certificate.objects.create(
            website=site,
            domains=" ".join(site.names),
            source="acme",
            private_key=key,
            fullchain=chain,
            status="active",
            installed=True,
        )
        with django_capture_on_commit_callbacks(execute=False):
            site_services.do_update_website(site, actor=customer, data={"aliases": ""})
        assert not Operation.objects.filter(kind="certificate.issue").exists()  # still covered
        with django_capture_on_commit_callbacks(execute=False):
            site_services.do_update_website(
                site, actor=customer, data={"aliases": "www.shop.example.com new.example.com"}
            )
        op = Operation.objects.get(kind="certificate.issue")
        assert op.lock_key == site.server.lock_key
        cert = Certificate.objects.get(website=site)
        # Until the new one is live the old one is what the site serves and what it covers.
        assert cert.fullchain == chain and cert.status == "active"
        assert cert.domains == "shop.example.com www.shop.example.com"

    def test_api_visibility_and_requests(self, site, customer, mallory):
        resp = login(mallory).post(
            "/api/v1/certificates/", {"website": str(site.uuid)}, content_type="application/json"
        )
        assert resp.status_code == 404
        client = login(customer)
        resp = client.post(
            "/api/v1/certificates/",
            {"website": str(site.uuid), "key_type": "rsa"},
            content_type="application/json",
        )
        assert resp.status_code == 202 and resp.json()["kind"] == "certificate.issue"
        cert = Certificate.objects.get(website=site)
        assert cert.key_type == "rsa"
        listed = client.get("/api/v1/certificates/").json()["results"]
        assert [c["uuid"] for c in listed] == [str(cert.uuid)]
        assert "private_key" not in listed[0]
        assert login(mallory).get("/api/v1/certificates/").json()["results"] == []
        assert login(mallory).post(f"/api/v1/certificates/{cert.uuid}/renew/").status_code == 404
        resp = client.post(f"/api/v1/certificates/{cert.uuid}/renew/")
        assert resp.status_code == 202


def test_renewal_is_scheduled_daily():
    from core.schedules import declared

    (item,) = [r for r in declared() if r.func == "websites.certificates.tasks.renew_due"]
    assert item.minutes == 24 * 60


def test_options_keep_the_challenge_path_and_take_tls_settings():
    from websites.options import parse_options

    with pytest.raises(ValidationError, match="serves ACME challenges"):
        parse_options(
            {"proxies": [{"path": "/.well-known/acme-challenge/", "upstream": "http://8.8.8.8"}]}
        )
    with pytest.raises(ValidationError, match="hsts_max_age"):
        parse_options({"hsts_max_age": 10**9})
    options = parse_options({"https_redirect": True, "hsts_max_age": 600})
    assert options.https_redirect and options.hsts_max_age == 600
    assert options.to_json() == {"https_redirect": True, "hsts_max_age": 600}


def test_the_sites_uptime_check_follows_its_live_certificate(site, customer):
    from monitoring.services import do_update_check, ensure_site_check

    check = ensure_site_check(site)
    key, chain = make_pair(site.names)
    cert = Certificate.objects.create(
        website=site, domains=" ".join(site.names), private_key=key, fullchain=chain
    )
    services.follow_tls_in_uptime_check(site)
    check.refresh_from_db()
    assert check.target == "http://shop.example.com/"  # files not on the server yet
    Certificate.objects.filter(pk=cert.pk).update(installed=True)
    services.follow_tls_in_uptime_check(site)
    check.refresh_from_db()
    assert check.target == "https://shop.example.com/"
    cert.delete()
    services.follow_tls_in_uptime_check(site)
    check.refresh_from_db()
    assert check.target == "http://shop.example.com/"
    # A target the owner chose is theirs.
    do_update_check(check, actor=customer, data={"target": "http://shop.example.com/health"})
    Certificate.objects.create(
        website=site, domains=" ".join(site.names), private_key=key, fullchain=chain, installed=True
    )
    services.follow_tls_in_uptime_check(site)
    check.refresh_from_db()
    assert check.target == "http://shop.example.com/health"


class TestDns01:
    """Which orders may use DNS-01 (tests/integration/test_certificates_dns01.py issues)."""

    @staticmethod
    def zone(name, owner, *, served=True):
        from dns.models import Nameserver, NameserverGroup, Zone

        group = None
        if served:
            group = NameserverGroup.objects.create(name=f"g-{name}-{owner.pk}")
            Nameserver.objects.create(
                group=group, hostname="ns1.example.net", host="127.0.0.1", kind="powerdns"
            )
        return Zone.objects.create(name=name, owner=owner, group=group)

    def test_order_names_put_the_wildcard_after_the_domain(self, site):
        from websites.certificates.dns01 import order_names

        assert order_names(site, False) == ["shop.example.com", "www.shop.example.com"]
        assert order_names(site, True) == ["shop.example.com", "*.shop.example.com"]
        site.aliases = "www.shop.example.com a.b.shop.example.com other.example.net"
        assert order_names(site, True) == [
            "shop.example.com",
            "*.shop.example.com",
            "a.b.shop.example.com",
            "other.example.net",
        ]

    def test_only_served_zones_of_the_sites_owner_count(self, site, customer, mallory):
        from dns.services import zone_serving

        mine = self.zone("example.com", customer)
        assert zone_serving("www.shop.example.com", user=customer) == mine
        assert zone_serving("www.shop.example.com", user=mallory) is None
        assert zone_serving("example.org", user=customer) is None
        self.zone("example.org", customer, served=False)  # no nameservers: not served
        assert zone_serving("x.example.org", user=customer) is None

    def test_wildcard_is_refused_without_our_zone_and_ordered_with_it(
        self, site, customer, mallory
    ):
        client = login(customer)
        self.zone("example.com", mallory)  # someone else's zone does not do
        body = {"website": str(site.uuid), "wildcard": True}
        resp = client.post("/api/v1/certificates/", body, content_type="application/json")
        assert resp.status_code == 400
        assert "*.shop.example.com" in resp.json()["wildcard"][0]
        assert "validated by DNS-01 only" in resp.json()["wildcard"][0]
        assert not Certificate.objects.filter(website=site).exists()

        from dns.models import Zone

        Zone.objects.all().delete()
        self.zone("example.com", customer)
        resp = client.post("/api/v1/certificates/", body, content_type="application/json")
        assert resp.status_code == 202 and resp.json()["kind"] == "certificate.issue"
        cert = Certificate.objects.get(website=site)
        assert (cert.challenge, cert.wildcard) == ("dns-01", True)
        assert cert.domains == "shop.example.com *.shop.example.com"
        # A renewal keeps the choice; turning the wildcard off keeps DNS-01 as chosen.
        services.request_certificate(site, actor=None)
        cert.refresh_from_db()
        assert (cert.challenge, cert.wildcard) == ("dns-01", True)
        resp = client.post(
            f"/api/v1/certificates/{cert.uuid}/renew/",
            {"wildcard": False},
            content_type="application/json",
        )
        assert resp.status_code == 202
        cert.refresh_from_db()
        assert (cert.challenge, cert.wildcard) == ("dns-01", False)
        assert cert.domains == "shop.example.com www.shop.example.com"
        assert client.get(f"/api/v1/certificates/{cert.uuid}/").json()["challenge"] == "dns-01"

    def test_portal_shows_why_dns01_is_refused(self, site, customer):
        resp = login(customer).post(
            f"/websites/certificates/site/{site.uuid}/issue/",
            {"key_type": "ecdsa", "challenge": "dns-01"},
        )
        assert resp.status_code == 400
        assert b"DNS-01 needs every name in a zone the panel serves" in resp.content

    def test_a_nameserver_not_serving_ends_the_wait_with_its_words_and_no_txt_left(
        self, site, customer
    ):
        """The bounded wait: a nameserver that does not answer (a closed port; the
        publish is still queued) fails the order before the ACME server is asked."""
        from dns.models import Nameserver, Record
        from tests.acme_support import free_port
        from websites.certificates.acme_client import Challenge
        from websites.certificates.dns01 import ChallengeNotServed, DnsResponder

        zone = self.zone("example.com", customer)
        Nameserver.objects.filter(group=zone.group).update(port=free_port())
        lines: list[str] = []
        responder = DnsResponder(customer, actor=customer, wait=0, log=lines.append)
        challenge = Challenge(
            name="shop.example.com",
            label="*.shop.example.com",
            token="t",
            validation="x" * 43,
            dns_name="_acme-challenge.shop.example.com",
        )
        with pytest.raises(ChallengeNotServed) as got:
            responder.publish([challenge])
        assert str(got.value).startswith("after 0 s, not every nameserver serves the challenge")
        assert "ns1.example.net (127.0.0.1:" in str(got.value)
        (record,) = Record.objects.filter(zone=zone)
        assert (record.name, record.type, record.ttl) == ("_acme-challenge.shop", "TXT", 60)
        assert record.content == '"' + "x" * 43 + '"'
        responder.unpublish([challenge])
        assert not Record.objects.filter(zone=zone).exists()
