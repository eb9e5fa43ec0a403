"""TLS certificates against a real ACME server: Pebble validates HTTP-01 for real by fetching
the token from a private nginx (the panel wrote the vhost's challenge location through the
apply engine, and the token file over SSH), the certificate is installed by the apply engine
(key 0600, chain 0644), HTTPS serves it (verified against Pebble's root), renewal replaces it,
and a failed install puts the previous key back with mode 0600."""

from __future__ import annotations

import hashlib
import shutil
import socket
import stat
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection as db

from servers import connection
from servers.engine.engine import Engine
from tests.acme_support import DnsStandIn, Pebble, free_port, https_peer, self_signed
from tests.integration.conftest import need, start_nginx, stop_pidfile, world_readable_tmp
from websites.certificates import services, tasks
from websites.certificates.models import Certificate
from websites.certificates.pem import new_key
from websites.models import Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(scope="module")
def tls_nginx():
    prefix = world_readable_tmp("uhp-tls-nginx-")
    daemon = start_nginx(prefix)
    daemon.tls_port = free_port()
    yield daemon
    stop_pidfile(prefix / "nginx.pid")
    time.sleep(0.1)
    shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def dns_standin():
    server = DnsStandIn()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pebble(tls_nginx, dns_standin):
    need("pebble")
    need("openssl")
    base = world_readable_tmp("uhp-pebble-")
    ca = Pebble(base, tls_nginx.port, dns_standin)
    yield ca
    ca.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def acme(settings, pebble, dns_standin):
    settings.PANEL_ACME_DIRECTORY = pebble.directory
    settings.PANEL_ACME_CA_BUNDLE = str(pebble.cert)
    settings.PANEL_ACME_RESOLVERS = [dns_standin.address]
    return pebble


@pytest.fixture
def tls_server(ssh_server, tls_nginx):
    ssh_server.profile = {
        **tls_nginx.profile(),
        "tls_dir": str(tls_nginx.prefix / "tls"),
        "nginx_tls_listen": f"127.0.0.1:{tls_nginx.tls_port}",
        "acme_challenge_dir": str(tls_nginx.prefix / "acme-challenge"),
        "public_addresses": "127.0.0.1",
        "nginx_default_server": "panel",
    }
    ssh_server.save()
    return ssh_server


def make_site(server, nginx, owner, domain, dns_standin, address="127.0.0.1", **extra):
    nginx.page(domain, f"hello from {domain}", owner.account_name)
    for name in [domain, *extra.get("aliases", "").split()]:
        dns_standin.records[name] = address
    site = Website.objects.create(domain=domain, server=server, owner=owner, **extra)
    apply_units(server, {site.unit})
    return site


def apply_units(server, units):
    server.refresh_from_db()
    t = connection.open_transport(server)
    return Engine(server, t).apply(units)


def issue(site, actor, capture):
    with capture(execute=True):
        op = services.request_certificate(site, actor=actor)
    op.refresh_from_db()
    return op


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def wait_serving(nginx, name, root, want_fp, timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        der, body = https_peer(nginx.tls_port, name, root)
        if fingerprint(der) == want_fp or time.monotonic() > end:
            return der, body
        time.sleep(0.05)


class TestAcme:
    def test_issue_serve_renew(
        self,
        acme,
        tls_server,
        tls_nginx,
        dns_standin,
        admin_user,
        q_sync,
        django_capture_on_commit_callbacks,
        settings,
    ):
        site = make_site(
            tls_server,
            tls_nginx,
            admin_user,
            "shop.example.com",
            dns_standin,
            aliases="www.shop.example.com",
        )
        # Every site serves the challenge path (not its index) before it has a certificate.
        assert tls_nginx.get(site.domain, "/.well-known/acme-challenge/none")[0] == 404
        op = issue(site, admin_user, django_capture_on_commit_callbacks)
        assert op.state == "succeeded", (op.error, list(op.lines.values_list("message", flat=True)))
        cert = Certificate.objects.get(website=site)
        assert cert.status == "active" and cert.installed and cert.last_error == ""
        assert cert.names == ["shop.example.com", "www.shop.example.com"]
        assert cert.not_after is not None and cert.key_type == "ecdsa"

        key_file = tls_nginx.prefix / "tls" / "shop.example.com.key"
        crt_file = tls_nginx.prefix / "tls" / "shop.example.com.crt"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(crt_file.stat().st_mode) == 0o644
        assert key_file.read_text() == cert.private_key
        with db.cursor() as cur:  # encrypted at rest
            cur.execute("SELECT private_key FROM certificates_certificate WHERE id = %s", [cert.pk])
            assert "PRIVATE KEY" not in cur.fetchone()[0]

        root = acme.root_pem()
        for name in cert.names:
            der, body = wait_serving(tls_nginx, name, root, cert.fingerprint)
            assert fingerprint(der) == cert.fingerprint
            assert body == "hello from shop.example.com"
        leaf = x509.load_der_x509_certificate(der)
        assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)

        # Renewal: everything is "due" with a window longer than the certificate's life.
        settings.PANEL_ACME_RENEW_DAYS = 100000
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.renew_due() == 1
        renewed = Certificate.objects.get(pk=cert.pk)
        assert renewed.fingerprint != cert.fingerprint, renewed.last_error
        assert renewed.status == "active" and renewed.last_error == ""
        der, _body = wait_serving(tls_nginx, site.domain, root, renewed.fingerprint)
        assert fingerprint(der) == renewed.fingerprint
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text() == renewed.private_key != cert.private_key

        # A bad install (key and chain that do not match) is rolled back after the swap:
        # the previous key comes back, still 0600, and HTTPS keeps serving.
        other, _ = self_signed(tls_nginx.prefix / "other", [site.domain])
        Certificate.objects.filter(pk=cert.pk).update(
            private_key=new_key("ecdsa"), fullchain=other.read_text()
        )
        result = apply_units(tls_server, {cert.unit})
        assert cert.unit in result.failed_units
        assert "does not belong" in result.failed_units[cert.unit]
        assert key_file.read_text() == renewed.private_key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        der, _body = https_peer(tls_nginx.tls_port, site.domain, root)
        assert fingerprint(der) == renewed.fingerprint

    def test_an_applied_site_gets_its_certificate_by_itself(
        self, acme, tls_server, tls_nginx, dns_standin, admin_user, settings
    ):
        """The step a site's apply ends with (websites/tasks.py): names that point here get a
        certificate in the same operation, served over HTTPS; a second apply orders nothing."""
        from core.operations import OperationContext, start_operation
        from websites.tasks import _auto_tls

        settings.PANEL_ACME_AUTO = True
        site = make_site(tls_server, tls_nginx, admin_user, "auto.example.com", dns_standin)
        op = start_operation(
            kind="website.create",
            task="tests.support.steps",
            owner=admin_user,
            requested_by=admin_user,
        )
        _auto_tls(OperationContext(op), site)
        cert = Certificate.objects.get(website=site)
        assert cert.status == "active" and cert.installed, cert.last_error
        der, body = wait_serving(tls_nginx, site.domain, acme.root_pem(), cert.fingerprint)
        assert fingerprint(der) == cert.fingerprint and body == "hello from auto.example.com"
        op.refresh_from_db()
        assert 88 <= op.progress <= 99  # the nested steps report inside the site's range
        _auto_tls(OperationContext(op), site)
        assert Certificate.objects.get(website=site).fingerprint == cert.fingerprint

    def test_new_aliases_are_reissued_and_the_uptime_check_follows_https(
        self,
        acme,
        tls_server,
        tls_nginx,
        dns_standin,
        admin_user,
        q_sync,
        django_capture_on_commit_callbacks,
    ):
        """Adding an alias orders a certificate for every name (the issue Operation after
        the site's apply); an alias that cannot be validated keeps the old certificate live.
        The site's automatic uptime check asks https:// once a certificate is live."""
        from monitoring.services import ensure_site_check
        from websites import services as site_services

        site = make_site(tls_server, tls_nginx, admin_user, "grow.example.com", dns_standin)
        check = ensure_site_check(site)
        assert check.target == "http://grow.example.com/"
        op = issue(site, admin_user, django_capture_on_commit_callbacks)
        assert op.state == "succeeded", op.error
        first = Certificate.objects.get(website=site)
        check.refresh_from_db()
        assert check.target == "https://grow.example.com/"
        root = acme.root_pem()

        dns_standin.records["shop.grow.example.com"] = "127.0.0.1"
        with django_capture_on_commit_callbacks(execute=True):
            site_services.do_update_website(
                site, actor=admin_user, data={"aliases": "shop.grow.example.com"}
            )
        second = Certificate.objects.get(website=site)
        assert second.fingerprint != first.fingerprint, second.last_error
        assert second.names == ["grow.example.com", "shop.grow.example.com"]
        assert services.uncovered_names(site, second) == []
        der, body = wait_serving(tls_nginx, "shop.grow.example.com", root, second.fingerprint)
        assert fingerprint(der) == second.fingerprint
        assert body == "hello from grow.example.com"

        # A name Pebble cannot validate (it resolves elsewhere): the order fails, the
        # certificate in place stays live and the page says what is not covered.
        dns_standin.records["lost.grow.example.com"] = "203.0.113.9"
        with django_capture_on_commit_callbacks(execute=True):
            site_services.do_update_website(
                site,
                actor=admin_user,
                data={"aliases": "shop.grow.example.com lost.grow.example.com"},
            )
        third = Certificate.objects.get(website=site)
        assert third.fingerprint == second.fingerprint and third.status == "active"
        assert "lost.grow.example.com resolves to 203.0.113.9" in third.last_error
        site.refresh_from_db()
        assert services.uncovered_names(site, third) == ["lost.grow.example.com"]
        der, _body = https_peer(tls_nginx.tls_port, "shop.grow.example.com", root)
        assert fingerprint(der) == second.fingerprint

        # Without a live certificate the check goes back to http://.
        Certificate.objects.filter(pk=third.pk).delete()
        services.follow_tls_in_uptime_check(site)
        check.refresh_from_db()
        assert check.target == "http://grow.example.com/"

    def test_https_redirect_and_hsts_and_rsa(
        self,
        acme,
        tls_server,
        tls_nginx,
        dns_standin,
        admin_user,
        q_sync,
        django_capture_on_commit_callbacks,
    ):
        site = make_site(
            tls_server,
            tls_nginx,
            admin_user,
            "rsa.example.com",
            dns_standin,
            options={"https_redirect": True, "hsts_max_age": 31536000},
        )
        with django_capture_on_commit_callbacks(execute=True):
            op = services.request_certificate(site, actor=admin_user, key_type="rsa")
        op.refresh_from_db()
        assert op.state == "succeeded", op.error
        cert = Certificate.objects.get(website=site)
        root = acme.root_pem()
        der, body = wait_serving(tls_nginx, site.domain, root, cert.fingerprint)
        assert body == "hello from rsa.example.com"
        assert x509.load_der_x509_certificate(der).public_key().key_size == 2048
        import urllib.request

        req = urllib.request.Request(
            f"http://127.0.0.1:{tls_nginx.port}/x", headers={"Host": site.domain}
        )

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None

        with pytest.raises(urllib.error.HTTPError) as got:
            urllib.request.build_opener(NoRedirect).open(req, timeout=5)
        assert got.value.code == 301
        assert got.value.headers["Location"].startswith("https://rsa.example.com")

    def test_name_not_pointing_here_is_refused_before_ordering(
        self,
        acme,
        tls_server,
        tls_nginx,
        dns_standin,
        admin_user,
        q_sync,
        django_capture_on_commit_callbacks,
    ):
        site = make_site(
            tls_server,
            tls_nginx,
            admin_user,
            "elsewhere.example.com",
            dns_standin,
            address="203.0.113.7",
        )
        op = issue(site, admin_user, django_capture_on_commit_callbacks)
        assert op.state == "failed"
        cert = Certificate.objects.get(website=site)
        assert cert.status == "failed"
        assert "elsewhere.example.com resolves to 203.0.113.7, not to this server" in (
            cert.last_error
        )

    def test_acme_servers_own_error_is_shown(
        self,
        acme,
        tls_server,
        tls_nginx,
        dns_standin,
        admin_user,
        q_sync,
        django_capture_on_commit_callbacks,
    ):
        """The name points here but the site was never applied: nginx answers the challenge
        with 404 and Pebble says so."""
        dns_standin.records["unapplied.example.com"] = "127.0.0.1"
        site = Website.objects.create(
            domain="unapplied.example.com", server=tls_server, owner=admin_user
        )
        op = issue(site, admin_user, django_capture_on_commit_callbacks)
        assert op.state == "failed"
        cert = Certificate.objects.get(website=site)
        assert cert.status == "failed"
        assert "The ACME server refused" in cert.last_error and "404" in cert.last_error
        assert cert.last_error in op.error or "404" in op.error


class TestUpload:
    def test_uploaded_certificate_is_installed_and_served(
        self,
        tls_server,
        tls_nginx,
        dns_standin,
        admin_user,
        q_sync,
        django_capture_on_commit_callbacks,
    ):
        site = make_site(tls_server, tls_nginx, admin_user, "upload.example.com", dns_standin)
        crt, key = self_signed(tls_nginx.prefix / "upload", [site.domain])
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_upload_certificate(
                site, actor=admin_user, private_key=key.read_text(), certificate=crt.read_text()
            )
        op.refresh_from_db()
        assert op.state == "succeeded", op.error
        cert = Certificate.objects.get(website=site)
        assert cert.source == "upload" and cert.status == "active" and cert.installed
        der, body = wait_serving(tls_nginx, site.domain, crt.read_text(), cert.fingerprint)
        assert fingerprint(der) == cert.fingerprint and body == "hello from upload.example.com"
        key_file = tls_nginx.prefix / "tls" / "upload.example.com.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    def test_a_bad_reupload_leaves_the_live_certificate_serving(
        self,
        tls_server,
        tls_nginx,
        dns_standin,
        admin_user,
        q_sync,
        django_capture_on_commit_callbacks,
    ):
        """A certificate already serves; a new upload is refused at validation (a key of
        another certificate) or by the server's nginx (a 1024-bit RSA key, which OpenSSL's
        security level refuses): the old key and chain stay on disk and serve, the row
        describes them again, the site is active, and the error says what happened."""
        from cryptography.hazmat.primitives.asymmetric import rsa
        from django.core.exceptions import ValidationError

        site = make_site(tls_server, tls_nginx, admin_user, "reup.example.com", dns_standin)
        crt, key = self_signed(tls_nginx.prefix / "reup", [site.domain])
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_upload_certificate(
                site, actor=admin_user, private_key=key.read_text(), certificate=crt.read_text()
            )
        op.refresh_from_db()
        assert op.state == "succeeded", op.error
        live = Certificate.objects.get(website=site)
        wait_serving(tls_nginx, site.domain, crt.read_text(), live.fingerprint)
        key_file = tls_nginx.prefix / "tls" / "reup.example.com.key"
        crt_file = tls_nginx.prefix / "tls" / "reup.example.com.crt"
        files = (key_file.read_bytes(), crt_file.read_bytes())

        def unchanged(status="active"):
            cert = Certificate.objects.get(website=site)
            assert (cert.fingerprint, cert.fullchain, cert.private_key) == (
                live.fingerprint,
                live.fullchain,
                live.private_key,
            )
            assert (cert.not_after, cert.domains, cert.status) == (
                live.not_after,
                live.domains,
                status,
            )
            assert (key_file.read_bytes(), crt_file.read_bytes()) == files
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            der, body = https_peer(tls_nginx.tls_port, site.domain, crt.read_text())
            assert fingerprint(der) == live.fingerprint and body == "hello from reup.example.com"
            site.refresh_from_db()
            assert site.status == "active", site.status_message
            return cert

        other_crt, other_key = self_signed(tls_nginx.prefix / "other", [site.domain])
        with pytest.raises(ValidationError, match="does not belong"):
            services.do_upload_certificate(
                site,
                actor=admin_user,
                private_key=other_key.read_text(),
                certificate=crt.read_text(),
            )
        unchanged()

        weak_crt, weak_key = self_signed(
            tls_nginx.prefix / "weak",
            [site.domain],
            key=rsa.generate_private_key(public_exponent=65537, key_size=1024),
        )
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_upload_certificate(
                site,
                actor=admin_user,
                private_key=weak_key.read_text(),
                certificate=weak_crt.read_text(),
            )
        op.refresh_from_db()
        assert op.state == "failed" and "key too small" in op.error, op.error
        cert = unchanged()
        assert "not installed" in cert.last_error and "key too small" in cert.last_error
        assert "previous certificate keeps serving" in cert.last_error


class TestCatchAll:
    def test_unknown_names_reach_no_site_and_delete_removes_the_files(
        self, tls_server, tls_nginx, dns_standin, admin_user
    ):
        """The panel's default server: an unknown Host gets the neutral page over HTTP, an
        unknown SNI name has its handshake refused (not another site's certificate); a
        deleted site's key and chain leave the server in the deletion's apply."""
        import ssl

        from websites.default_server import UNIT
        from websites.tasks import delete_units

        site = make_site(tls_server, tls_nginx, admin_user, "first.example.com", dns_standin)
        crt, key = self_signed(tls_nginx.prefix / "first", [site.domain])
        cert = Certificate.objects.create(
            website=site,
            domains=site.domain,
            source="upload",
            private_key=key.read_text(),
            fullchain=crt.read_text(),
        )
        result = apply_units(tls_server, {cert.unit})
        assert not result.failed_units
        Certificate.objects.filter(pk=cert.pk).update(installed=True)  # the report's job
        result = apply_units(tls_server, {site.unit, UNIT})
        assert not result.failed_units, result.failed_units
        der, body = wait_serving(tls_nginx, site.domain, crt.read_text(), cert.fingerprint)
        assert body == "hello from first.example.com"

        status, body = tls_nginx.get("nobody-owns.example.net")
        assert status == 404 and "first.example.com" not in body
        with pytest.raises(urllib.error.HTTPError) as got:
            urllib.request.urlopen(  # noqa: S310 - loopback
                urllib.request.Request(
                    f"http://127.0.0.1:{tls_nginx.port}/", headers={"Host": "x.invalid"}
                ),
                timeout=5,
            )
        assert got.value.read() == b"No website is configured for this name.\n"
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", tls_nginx.tls_port), timeout=5) as raw,
            pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"),
        ):
            insecure.wrap_socket(raw, server_hostname="nobody-owns.example.net")

        # Deleting the site: vhost, key and chain leave in the same apply.
        Website.objects.filter(pk=site.pk).update(status=Website.Status.DELETING)
        site.refresh_from_db()
        result = apply_units(tls_server, delete_units(site))
        assert not result.failed_units, result.failed_units
        tls = tls_nginx.prefix / "tls"
        assert not (tls / "first.example.com.key").exists()
        assert not (tls / "first.example.com.crt").exists()
        assert not (tls_nginx.sites / "first.example.com.conf").exists()
