"""The catch-all vhost and the units a site's operations apply: the default server follows
every website operation, a deletion takes the certificate's files with it, and a stored raw
directive that repeats the ACME challenge location fails that site at render time."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from servers.models import DirtyUnit, Server
from websites import services
from websites.certificates.models import Certificate
from websites.default_server import UNIT, DefaultServerFiles, render_default
from websites.models import Website
from websites.tasks import delete_units
from websites.vhost import render_vhost

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(admin_user):
    return Server.objects.create(name="web", address="93.184.216.34", owner=admin_user)


@pytest.fixture
def site(server, customer):
    return Website.objects.create(domain="shop.example.com", server=server, owner=customer)


def test_default_server_without_and_with_tls():
    plain, _rev = render_default("80", None)
    assert "listen 80 default_server;" in plain and "ssl" not in plain
    assert 'return 404 "No website is configured' in plain
    tls, rev = render_default("80", "443")
    assert "listen 443 ssl http2 default_server;" in tls and "ssl_reject_handshake on;" in tls
    assert f"X-Panel-Revision {rev}" in tls  # the probe says this file serves


def test_no_sites_no_catch_all_then_tls_once_a_certificate_is_live(server, site):
    from servers.engine import profile_for

    provider = DefaultServerFiles()
    profile = profile_for(server)
    (f,) = provider.files(server, profile, {UNIT})
    assert b"ssl_reject_handshake" not in f.content and f.path.endswith("000-panel-default.conf")
    assert list(provider.files(server, profile, {"website:x"})) == []
    Certificate.objects.create(website=site, domains=site.domain, installed=True)
    (f,) = provider.files(server, profile, None)
    assert b"ssl_reject_handshake on;" in f.content
    server.profile = {"nginx_default_server": "own"}  # nginx.conf has its own
    assert list(provider.files(server, profile_for(server), None)) == []
    server.profile = {"nginx_default_server": "mine"}
    (failed,) = provider.files(server, profile_for(server), None)
    assert "panel or own" in failed.reason
    Website.objects.all().delete()
    assert list(provider.files(server, profile, None)) == []


def test_operations_apply_the_catch_all_and_delete_takes_the_certificate(site, admin_user):
    services.do_update_website(site, actor=admin_user, data={"options": {"gzip": True}})
    units = set(DirtyUnit.objects.values_list("unit", flat=True))
    assert units == {site.unit, UNIT}
    assert delete_units(site) == {site.unit, UNIT}
    cert = Certificate.objects.create(website=site, domains=site.domain, fullchain="x")
    assert delete_units(site) == {site.unit, UNIT, cert.unit}


def test_stored_raw_challenge_location_fails_the_site_at_render(site):
    Website.objects.filter(pk=site.pk).update(
        custom_directives="location /.well-known/acme-challenge/ { return 204; }"
    )
    site.refresh_from_db()
    with pytest.raises(ValidationError, match="repeat the location /.well-known/acme-challenge/"):
        render_vhost(site, "80", "/home")
