"""Websites from creation to deletion over the SSH transport, against a private sshd (which
also serves the customers' SFTP), nginx and php-fpm on loopback: system accounts, PHP and
proxy sites, suspension, SFTP chroots, deletion, and bad input refused."""

from __future__ import annotations

import http.server
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest

from core.models import OperationLogLine
from tests.conftest import login, make_user
from tests.integration.conftest import (
    wait_port,
)
from tests.integration.web_stack import WebStack
from websites import plans, services
from websites.certificates.models import Certificate
from websites.models import SystemAccount, Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST = "127.0.0.3"
EMAIL = "uhpsite@example.com"  # account name "uhpsite": a real Linux user while the tests run
NAME = "uhpsite"


@pytest.fixture(scope="module")
def stack():
    """sshd (including a managed Match directory), nginx and php-fpm 8.2, all private."""
    web = WebStack(HOST, NAME, php=True)
    yield web
    web.stop()


@pytest.fixture
def server(stack, admin_user):
    return stack.server(admin_user, "web-life", facts={"php_versions": ["8.2"]})


@pytest.fixture
def upstream():
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the library's name
            body = f"upstream saw {self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def run_ops(q_sync, django_capture_on_commit_callbacks):
    """Operations started inside the block run (inline) when it ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _get_slow(port: int, host: str) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - loopback
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _sftp(port: int, password: str) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - a test sshd
    client.connect(
        HOST,
        port=port,
        username=NAME,
        password=password,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client, client.open_sftp()


def test_site_lifecycle_php_sftp_proxy_suspend_delete(
    stack, server, admin_user, upstream, run_ops, settings
):
    from tests.acme_support import DnsStandIn

    nginx = stack.nginx
    nowhere = DnsStandIn()  # knows no names: automatic HTTPS must say why it waits
    settings.PANEL_ACME_AUTO = True
    settings.PANEL_ACME_RESOLVERS = [nowhere.address]
    homes: Path = stack.homes
    customer = make_user(EMAIL, "customer")
    assert customer.account_name == NAME
    plan = plans.do_create_plan(
        actor=admin_user, data={"name": "Web", "websites": 3, "php_versions": "8.2"}
    )
    plans.do_subscribe(customer, plan, actor=admin_user)
    api = login(customer)

    # A PHP site, created by the customer through the API.
    with run_ops():
        resp = api.post(
            "/api/v1/websites/",
            {
                "domain": "php.life.test",
                "server": str(server.uuid),
                "kind": "php",
                "php_version": "8.2",
            },
            content_type="application/json",
        )
    assert resp.status_code == 201, resp.content
    site = Website.objects.get(domain="php.life.test")
    assert site.status == "active", site.status_message
    log = " ".join(
        OperationLogLine.objects.filter(operation__kind__startswith="website").values_list(
            "message", flat=True
        )
    )
    assert "HTTPS not requested: php.life.test does not resolve" in log, log
    assert not Certificate.objects.filter(website=site).exists()
    nowhere.stop()
    settings.PANEL_ACME_AUTO = False
    account = SystemAccount.objects.get(server=server, user=customer)
    assert account.status == "active" and account.name == NAME
    home = homes / NAME
    public = home / "sites" / "php.life.test" / "public"
    assert (public / "index.html").exists()
    assert nginx.get("php.life.test")[0] == 200  # the default page
    (public / "i.php").write_text(
        "<?php echo 'php says ', 1 + 2, ' as ', get_current_user() === '' ? '?' : 'x', ' ',"
        " @file_get_contents('/etc/hostname') === false ? 'confined' : 'open';"
    )
    status, body = nginx.get("php.life.test", "/i.php")
    assert status == 200 and body.startswith("php says 3") and body.endswith("confined"), body
    pool = stack.php / "pool.d" / f"{site.pool_name}.conf"
    assert f"user = {NAME}" in pool.read_text() and "pm = ondemand" in pool.read_text()

    # SFTP: a password, a chroot to the home, no writing outside the web roots.
    with run_ops():
        services.do_set_sftp_password(account, actor=customer, password="correct horse 42")
    sshd_block = stack.base / "sshd.d" / f"panel-{NAME}.conf"
    assert "ChrootDirectory" in sshd_block.read_text()
    wait_port(HOST, stack.ssh_port)
    client, sftp = _sftp(stack.ssh_port, "correct horse 42")
    try:
        assert {"sites", "logs"} <= set(sftp.listdir("/"))
        assert "etc" not in sftp.listdir("/")
        with pytest.raises(OSError):
            sftp.open("/evil.txt", "w").close()
        with pytest.raises(OSError):  # "/" is the home: there is no /etc above it
            sftp.listdir("/../../etc")
        with pytest.raises(OSError):
            sftp.open("/logs/x.txt", "w").close()
        with sftp.open("/sites/php.life.test/public/up.txt", "w") as f:
            f.write("uploaded")
    finally:
        client.close()
    assert nginx.get("php.life.test", "/up.txt") == (200, "uploaded")
    # Bandwidth: nginx's own per-site access log, in its combined format, is counted.
    from servers import connection
    from websites.bandwidth import measure_server

    assert measure_server(connection.open_transport(server), server) >= len("uploaded")
    assert site.traffic.get().bytes >= len("uploaded")

    # A reverse proxy (staff may point it at loopback), and one whose host never resolves:
    # nginx keeps serving every other site.
    with run_ops():
        services.do_create_website(
            actor=admin_user,
            data={
                "domain": "proxy.life.test",
                "server": server,
                "owner": customer,
                "kind": "proxy",
                "upstream": f"http://127.0.0.1:{upstream}",
            },
        )
        services.do_create_website(
            actor=admin_user,
            data={
                "domain": "lost.life.test",
                "server": server,
                "owner": customer,
                "kind": "proxy",
                "upstream": "http://no-such-host.invalid:8080",
            },
        )
    assert Website.objects.get(domain="proxy.life.test").status == "active"
    assert nginx.get("proxy.life.test") == (200, "upstream saw proxy.life.test")
    assert _get_slow(nginx.port, "lost.life.test") == 502  # after the resolver's 3 s
    assert nginx.get("php.life.test", "/up.txt") == (200, "uploaded")

    # The plan allows 3 sites.
    resp = api.post(
        "/api/v1/websites/",
        {"domain": "four.life.test", "server": str(server.uuid)},
        content_type="application/json",
    )
    assert resp.status_code == 400 and "allows 3 websites; you have 3" in resp.content.decode()

    # Suspension: the page, 503; the customer cannot lift it; the provider can.
    site.refresh_from_db()
    assert api.post(f"/api/v1/websites/{site.uuid}/unsuspend/").status_code == 400
    admin = login(admin_user)
    with run_ops():
        resp = admin.post(
            f"/api/v1/websites/{site.uuid}/suspend/",
            {"reason": "abuse"},
            content_type="application/json",
        )
    assert resp.status_code == 202, resp.content
    nginx.wait_for_status("php.life.test", 503)
    site.refresh_from_db()
    assert site.status == "suspended"
    assert not pool.exists()  # no PHP while suspended
    with run_ops():
        admin.post(f"/api/v1/websites/{site.uuid}/unsuspend/")
    nginx.wait_for_status("php.life.test", 200)

    # Deletion: files, pool, vhost; with the last site the user, home and SFTP block.
    with run_ops():
        assert api.delete(f"/api/v1/websites/{site.uuid}/").status_code == 202
    assert not Website.objects.filter(pk=site.pk).exists()
    assert not (home / "sites" / "php.life.test").exists() and not pool.exists()
    assert not (Path(nginx.sites) / "php.life.test.conf").exists()
    assert nginx.get("php.life.test")[0] == 404
    assert subprocess.run(["id", NAME], capture_output=True).returncode == 0  # sites remain
    with run_ops():
        for other in Website.objects.filter(owner=customer):
            services.do_delete_website(other, actor=customer)
    assert not Website.objects.filter(owner=customer).exists()
    assert subprocess.run(["id", NAME], capture_output=True).returncode != 0
    assert not home.exists() and not sshd_block.exists()
    assert not SystemAccount.objects.filter(user=customer).exists()


@pytest.mark.parametrize(
    "data,field",
    [
        ({"domain": "a;b"}, "domain"),
        ({"domain": "x.com{"}, "domain"),
        (
            {"domain": "p.life.test", "kind": "proxy", "upstream": "http://203.0.113.9\n"},
            "upstream",
        ),
        (
            {"domain": "p.life.test", "kind": "proxy", "upstream": "http://127.0.0.1:8080"},
            "upstream",
        ),
        ({"domain": "p.life.test", "kind": "proxy", "upstream": "http://10.1.2.3"}, "upstream"),
        ({"domain": "p.life.test", "kind": "php", "php_version": "7.4"}, "php_version"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(server, data, field):
    customer = make_user("badinput@example.com", "customer")
    api = login(customer)
    resp = api.post(
        "/api/v1/websites/", {"server": str(server.uuid), **data}, content_type="application/json"
    )
    assert resp.status_code == 400, resp.content
    assert field in resp.json(), resp.json()
    assert not Website.objects.exists()
