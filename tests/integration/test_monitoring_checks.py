"""Uptime checks against a private nginx on loopback: up, down, keyword missing, a TLS
certificate (from a test CA made here) that expires in five days; results feed the
"check failing" alert and the uptime percentages."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from monitoring import checks, services
from monitoring.alerts import evaluate_alerts
from monitoring.models import Check, CheckResult
from tests.integration.conftest import free_port, need, stop_pidfile, wait_port, world_readable_tmp

pytestmark = pytest.mark.django_db


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_certs(base, days_left: int):
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("panel test CA"))
        .issuer_name(_name("panel test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days_left))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (base / "ca.pem").write_bytes(ca.public_bytes(pem))
    (base / "site.pem").write_bytes(leaf.public_bytes(pem))
    (base / "site.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture(scope="module")
def web():
    need("nginx")
    base = world_readable_tmp("uhp-checks-")
    for sub in ("logs", "tmp", "www"):
        (base / sub).mkdir()
    (base / "www" / "index.html").write_text("<h1>hello panel</h1>")
    _make_certs(base, days_left=5)
    http_port, https_port = free_port(), free_port()
    (base / "nginx.conf").write_text(
        "worker_processes 1;\n"
        f"pid {base}/nginx.pid;\n"
        f"error_log {base}/logs/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {base}/tmp/body; proxy_temp_path {base}/tmp/proxy;\n"
        f"  fastcgi_temp_path {base}/tmp/fcgi; uwsgi_temp_path {base}/tmp/uwsgi;\n"
        f"  scgi_temp_path {base}/tmp/scgi;\n"
        f"  server {{ listen 127.0.0.1:{http_port}; root {base}/www; }}\n"
        f"  server {{ listen 127.0.0.1:{https_port} ssl; root {base}/www;\n"
        f"    ssl_certificate {base}/site.pem; ssl_certificate_key {base}/site.key; }}\n"
        "}\n"
    )
    subprocess.run(["nginx", "-p", f"{base}/", "-c", f"{base}/nginx.conf"], check=True)
    wait_port("127.0.0.1", http_port)
    wait_port("127.0.0.1", https_port)
    yield {"base": base, "http": http_port, "https": https_port}
    stop_pidfile(base / "nginx.pid")
    time.sleep(0.1)
    shutil.rmtree(base, ignore_errors=True)


def _check(owner, name, **data):
    return services.do_create_check(actor=owner, data={"name": name, **data})


def test_http_tcp_tls_and_keyword_checks(web, admin_user, settings):
    settings.PANEL_CHECKS_CA_FILE = str(web["base"] / "ca.pem")
    http = f"http://127.0.0.1:{web['http']}/"
    closed = free_port()
    made = [
        _check(admin_user, "up", target=http, keyword="hello panel"),
        _check(admin_user, "keyword", target=http, keyword="goodbye", retries=2),
        _check(admin_user, "tls", target=f"https://localhost:{web['https']}/"),
        _check(admin_user, "missing", target=f"http://127.0.0.1:{web['http']}/nope", retries=1),
        _check(admin_user, "down", target=f"http://127.0.0.1:{closed}/", retries=1),
        _check(admin_user, "port", kind="tcp", target=f"127.0.0.1:{web['http']}"),
        _check(admin_user, "port closed", kind="tcp", target=f"127.0.0.1:{closed}", retries=1),
    ]
    assert checks.run_due().ran == len(made)
    found = {c.name: c for c in Check.objects.all()}
    assert found["up"].status == "up" and found["up"].last_response_ms is not None
    # One failed run is not down yet when two are asked for.
    assert found["keyword"].status == "unknown" and "goodbye" in found["keyword"].last_error
    assert found["tls"].status == "up" and 4 <= found["tls"].tls_days_left <= 5
    assert found["missing"].status == "down" and "404" in found["missing"].last_error
    assert found["down"].status == "down" and found["down"].last_error
    assert found["port"].status == "up" and found["port closed"].status == "down"
    # Nothing is due again before its interval; then the second run makes "keyword" down.
    assert checks.run_due().ran == 0
    later = found["up"].next_check_at
    checks.run_due(later)
    assert Check.objects.get(name="keyword").status == "down"
    shares = checks.uptime(Check.objects.all(), later)
    assert shares[found["up"].pk] == {"24h": 100.0, "30d": 100.0}
    assert shares[found["keyword"].pk]["24h"] == 0.0
    assert CheckResult.objects.count() == 2 * len(made)


def test_untrusted_certificate_is_down(web, admin_user, settings):
    settings.PANEL_CHECKS_CA_FILE = ""
    _check(admin_user, "tls", target=f"https://localhost:{web['https']}/", retries=1)
    checks.run_due()
    check = Check.objects.get()
    assert check.status == "down" and "TLS certificate" in check.last_error


def test_check_failing_alert_and_private_targets_of_customers(web, admin_user, customer):
    _check(admin_user, "down", target=f"http://127.0.0.1:{free_port()}/", retries=1)
    mine = _check(customer, "mine", target=f"http://127.0.0.1:{web['http']}/", retries=1)
    services.do_create_rule(actor=admin_user, data={"name": "checks", "kind": "check_failing"})
    services.do_create_rule(actor=customer, data={"name": "checks", "kind": "check_failing"})
    checks.run_due()
    mine.refresh_from_db()
    assert mine.status == "down" and "not a public address" in mine.last_error
    fired = evaluate_alerts().fired
    # A rule watches what its owner may see: staff every check, a customer its own.
    assert sorted((a.owner.email, a.label) for a in fired) == [
        ("admin@example.com", "down"),
        ("admin@example.com", "mine"),
        ("customer@example.com", "mine"),
    ]


@pytest.fixture(scope="module")
def bind(tmp_path_factory):
    from tests.integration.bind import remove, start_bind

    server = start_bind(tmp_path_factory.mktemp("checks-bind"))
    yield server
    remove(server)


def test_dns_check_compares_the_answer(bind, admin_user):
    where = {"dns_server": f"127.0.0.1:{bind.port}", "dns_type": "NS", "retries": 1}
    _check(
        admin_user, "ns ok", kind="dns", target="example.test", expected="ns1.example.net", **where
    )
    _check(
        admin_user,
        "ns moved",
        kind="dns",
        target="example.test",
        expected="ns9.example.net",
        **where,
    )
    _check(admin_user, "no name", kind="dns", target="nothing.example.test", **where)
    checks.run_due()
    found = {c.name: c for c in Check.objects.all()}
    assert found["ns ok"].status == "up"
    assert found["ns moved"].status == "down" and "ns1.example.net" in found["ns moved"].last_error
    assert found["no name"].status == "down"


def test_websites_get_an_http_check_once(admin_user):
    from servers.models import Server
    from websites.models import Website

    server = Server.objects.create(name="w", address="93.184.216.34", owner=admin_user)
    site = Website.objects.create(domain="shop.example.com", server=server, owner=admin_user)
    first = services.ensure_site_check(site)
    assert services.ensure_site_check(site) == first
    assert (first.kind, first.target, first.owner) == (
        "http",
        "http://shop.example.com/",
        admin_user,
    )
    assert Check.objects.count() == 1


def test_ping_checks_answer_and_say_why_not(admin_user):
    need("ping")
    up = _check(admin_user, "loopback", kind="ping", target="127.0.0.1", retries=1)
    # TEST-NET-2 (RFC 5737): no route from a machine with only loopback, or no answer.
    down = _check(admin_user, "nowhere", kind="ping", target="198.51.100.7", retries=1, timeout=2)
    assert checks.run_checks([up, down]).went_down == ["nowhere"]
    up.refresh_from_db()
    down.refresh_from_db()
    assert up.status == "up" and up.last_response_ms is not None
    assert down.status == "down"
    assert "unreachable" in down.last_error.lower() or "100% packet loss" in down.last_error
    assert not down.last_error.startswith("[")  # ping's own words, not a Python list
