"""ACME DNS-01 and wildcard certificates against real programs: Pebble resolves through a
private BIND (``-dnsserver``) that serves a zone the panel publishes (TSIG updates, rndc
addzone); the panel puts the ``_acme-challenge`` TXT records in the zone through the DNS
services, waits until its nameservers serve them, Pebble validates them for real, and the
records are gone afterwards, on failure too."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509

from core.models import AuditEntry
from dns import services as dns_services
from dns.models import NameserverGroup, Record
from tests.acme_support import Pebble, free_port, https_peer
from tests.integration.conftest import need, start_nginx, stop_pidfile, world_readable_tmp
from tests.integration.dns_servers import ask, start_panel_bind
from tests.integration.test_dns_publish import bind_nameserver
from websites.certificates import services
from websites.certificates.models import Certificate
from websites.models import Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def bind():
    """The zone's nameserver, and the resolver Pebble's validator asks."""
    from tests.integration.bind import remove

    daemon = start_panel_bind(Path(tempfile.mkdtemp(prefix="uhp-dns01-bind-")))
    yield daemon
    remove(daemon)


@pytest.fixture(scope="module")
def other_bind():
    """Serves zones Pebble never asks: the panel sees its TXT, Pebble does not."""
    from tests.integration.bind import remove

    daemon = start_panel_bind(Path(tempfile.mkdtemp(prefix="uhp-dns01-other-")))
    yield daemon
    remove(daemon)


@pytest.fixture(scope="module")
def tls_nginx():
    prefix = world_readable_tmp("uhp-dns01-nginx-")
    daemon = start_nginx(prefix)
    daemon.tls_port = free_port()
    yield daemon
    stop_pidfile(prefix / "nginx.pid")
    time.sleep(0.1)
    shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def pebble(bind):
    need("pebble")
    base = world_readable_tmp("uhp-dns01-pebble-")
    # No HTTP-01 here: the http port is a closed one.
    ca = Pebble(base, free_port(), SimpleNamespace(address=f"{bind.host}:{bind.port}"))
    yield ca
    ca.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def acme(settings, pebble):
    settings.PANEL_ACME_DIRECTORY = pebble.directory
    settings.PANEL_ACME_CA_BUNDLE = str(pebble.cert)
    settings.PANEL_ACME_DNS_WAIT = 20
    return pebble


@pytest.fixture
def tls_server(ssh_server, tls_nginx):
    ssh_server.profile = {
        **tls_nginx.profile(),
        "tls_dir": str(tls_nginx.prefix / "tls"),
        "nginx_tls_listen": f"127.0.0.1:{tls_nginx.tls_port}",
        "acme_challenge_dir": str(tls_nginx.prefix / "acme-challenge"),
        "nginx_default_server": "panel",
    }
    ssh_server.save()
    return ssh_server


def zone_on(daemon, name: str, owner, admin):
    group = NameserverGroup.objects.create(name=f"g-{name}")
    bind_nameserver(daemon, group)
    zone = dns_services.do_create_zone(
        actor=admin, data={"name": name, "owner": owner, "group": group}
    )
    zone.refresh_from_db()
    assert zone.status == "published", zone.status_message
    return zone


def site_in(server, nginx, owner, domain, **extra) -> Website:
    from servers import connection
    from servers.engine.engine import Engine

    nginx.page(domain, f"hello from {domain}", owner.account_name)
    site = Website.objects.create(domain=domain, server=server, owner=owner, **extra)
    server.refresh_from_db()
    result = Engine(server, connection.open_transport(server)).apply({site.unit})
    assert not result.failed_units, result.failed_units
    return site


def challenge_records(zone) -> list[Record]:
    return list(Record.objects.filter(zone=zone, name__startswith="_acme-challenge"))


def served_txt(daemon, name: str):
    return ask(daemon.host, daemon.port, name, "TXT")


def test_wildcard_certificate_through_dns01(
    acme, bind, tls_server, tls_nginx, customer, admin_user, q_sync
):
    zone = zone_on(bind, "dns01-a.test", customer, admin_user)
    site = site_in(tls_server, tls_nginx, customer, "dns01-a.test", aliases="www.dns01-a.test")

    op = services.request_certificate(site, actor=customer, wildcard=True)
    op.refresh_from_db()
    assert op.state == "succeeded", (op.error, list(op.lines.values_list("message", flat=True)))

    cert = Certificate.objects.get(website=site)
    assert cert.challenge == "dns-01" and cert.wildcard and cert.status == "active"
    assert cert.names == ["dns01-a.test", "*.dns01-a.test"]  # www is under the wildcard
    leaf = x509.load_pem_x509_certificate(cert.fullchain.encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["*.dns01-a.test", "dns01-a.test"]

    # Served over HTTPS for the alias too: the wildcard covers it.
    root = acme.root_pem()
    end = time.monotonic() + 5
    while True:
        der, body = https_peer(tls_nginx.tls_port, "www.dns01-a.test", root)
        if x509.load_der_x509_certificate(der) == leaf or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert x509.load_der_x509_certificate(der) == leaf and body == "hello from dns01-a.test"

    # The TXT records were added and removed through the DNS services (audited), and the
    # nameserver no longer serves them.
    assert challenge_records(zone) == []
    assert served_txt(bind, "_acme-challenge.dns01-a.test.") is None
    actions = list(
        AuditEntry.objects.filter(action__startswith="record.").values_list("action", flat=True)
    )
    assert actions.count("record.create") == 2 and actions.count("record.delete") == 2
    lines = " ".join(op.lines.values_list("message", flat=True))
    assert "Every nameserver serves the challenge TXT records" in lines


def test_pebbles_own_error_and_no_txt_left(
    acme, other_bind, tls_server, tls_nginx, customer, admin_user, q_sync
):
    """The zone is served by a nameserver Pebble does not ask: the panel sees its TXT
    records, Pebble's lookup fails, and its words end the operation."""
    zone = zone_on(other_bind, "dns01-b.test", customer, admin_user)
    site = site_in(tls_server, tls_nginx, customer, "dns01-b.test")

    op = services.request_certificate(site, actor=customer, challenge="dns-01")
    op.refresh_from_db()
    assert op.state == "failed"
    cert = Certificate.objects.get(website=site)
    assert cert.status == "failed" and cert.challenge == "dns-01"
    assert cert.last_error.startswith("The ACME server refused: dns01-b.test: ")
    # Pebble's own words, naming what it asked its resolver.
    assert "Error retrieving TXT records for DNS challenge" in cert.last_error
    assert "_acme-challenge.dns01-b.test" in cert.last_error
    assert challenge_records(zone) == []
    assert served_txt(other_bind, "_acme-challenge.dns01-b.test.") is None


def test_failed_publish_ends_the_order_with_the_nameservers_words(
    acme, bind, tls_server, tls_nginx, customer, admin_user, q_sync
):
    """A frozen zone refuses the TXT update: the operation fails at once with BIND's
    answer, nothing is answered at Pebble, and the records leave the panel."""
    zone = zone_on(bind, "dns01-c.test", customer, admin_user)
    site = site_in(tls_server, tls_nginx, customer, "dns01-c.test")
    bind.rndc("freeze", "dns01-c.test")
    try:
        op = services.request_certificate(site, actor=customer, challenge="dns-01")
    finally:
        bind.rndc("thaw", "dns01-c.test")
    op.refresh_from_db()
    assert op.state == "failed"
    cert = Certificate.objects.get(website=site)
    assert cert.last_error.startswith(
        "Not validated: publishing the challenge TXT records failed: ns1.example.net"
    )
    assert "REFUSED" in cert.last_error
    assert "Every nameserver serves" not in " ".join(op.lines.values_list("message", flat=True))
    assert challenge_records(zone) == []
    assert served_txt(bind, "_acme-challenge.dns01-c.test.") is None


def test_wildcard_refused_when_the_zone_is_not_ours(tls_server, customer):
    from django.core.exceptions import ValidationError

    site = Website.objects.create(domain="nozone.example.org", server=tls_server, owner=customer)
    with pytest.raises(ValidationError) as got:
        services.request_certificate(site, actor=customer, wildcard=True)
    assert "wildcard" in got.value.message_dict
    assert "nozone.example.org" in got.value.message_dict["wildcard"][0]
    assert not Certificate.objects.filter(website=site).exists()
