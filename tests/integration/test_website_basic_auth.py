"""Basic auth on paths (the typed option ``auth_paths``) over the SSH transport, against a
private sshd, nginx and php-fpm on loopback: the protected path answers 401 without or with
wrong credentials and 200 (PHP included) with the right ones, other paths stay open, the
password file is root's, readable by nginx's group only and outside the web root, and leaves
with the protection. Then fail2ban: a private fail2ban-server with the panel's jails (a
dummy ban action) bans a client that keeps sending wrong passwords to the real nginx."""

from __future__ import annotations

import base64
import http.client
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEntry
from servers import connection
from servers.engine.engine import Engine
from servers.fail2ban import UNIT as F2B_UNIT
from tests.conftest import login, make_user, wait_until
from tests.integration.conftest import need, stop_pidfile, world_readable_tmp
from tests.integration.web_stack import WebStack, drop_user
from websites import services
from websites.apply import AUTH_DIR
from websites.vhost import auth_file_name

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST = "127.0.0.23"
EMAIL = "uhpauth@example.com"  # account name "uhpauth": a real Linux user in the tests
NAME = "uhpauth"
DOMAIN = "locked.auth.test"
CLIENT = "127.0.0.77"  # the "attacker": a loopback address fail2ban does not count as its own


@pytest.fixture(scope="module")
def stack():
    web = WebStack(HOST, NAME, php=True)
    # The private nginx has no user directive: its workers run as nobody:nogroup.
    web.profile["nginx_group"] = "nogroup"
    yield web
    web.stop()


@pytest.fixture
def run_ops(q_sync, django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def customer(db, stack):
    drop_user(NAME)
    subprocess.run(["rm", "-rf", str(stack.homes / NAME)], check=True)
    for d in (stack.nginx.sites, stack.base / "sshd.d", stack.base / "state"):
        subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir()
    subprocess.run(stack.nginx.cmd("-s", "reload"), check=True)
    user = make_user(EMAIL, "customer")
    assert user.account_name == NAME
    return user


def get(stack, path: str, auth: tuple[str, str] | None = None, source: str = "127.0.0.1"):
    conn = http.client.HTTPConnection(
        "127.0.0.1", stack.nginx.port, timeout=10, source_address=(source, 0)
    )
    headers = {"Host": DOMAIN}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def php_site(stack, admin_user, customer, run_ops, **extra):
    server = stack.server(admin_user, facts={"php_versions": ["8.2"]}, **extra)
    with run_ops():
        site = services.do_create_website(
            actor=admin_user,
            data={
                "domain": DOMAIN,
                "server": server,
                "owner": customer,
                "kind": "php",
                "php_version": "8.2",
            },
        )
    site.refresh_from_db()
    assert site.status == "active", site.status_message
    public = stack.homes / NAME / "sites" / DOMAIN / "public"
    (public / "private").mkdir()
    (public / "private" / "index.php").write_text("<?php echo 'secret from ' . PHP_SAPI;")
    (public / "private" / "page.html").write_text("secret page")
    (public / "open.html").write_text("open page")
    for p in (public / "private", public / "private" / "index.php", public / "open.html"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (public / "private" / "page.html").chmod(0o644)
    return site, server


def wait_status(stack, path, status, auth=None):
    wait_until(lambda: get(stack, path, auth)[0] == status)


def test_protected_path_asks_for_the_password_and_serves_php(stack, admin_user, customer, run_ops):
    site, _server = php_site(stack, admin_user, customer, run_ops)
    assert get(stack, "/private/")[0] == 200  # open before

    with run_ops():
        services.do_protect_path(
            site,
            actor=customer,
            data={"path": "/private", "name": "bob", "password": "correct horse"},
        )
    site.refresh_from_db()
    assert site.status == "active", site.status_message
    wait_status(stack, "/private/", 401)
    good = ("bob", "correct horse")
    assert get(stack, "/private/", good) == (200, "secret from fpm-fcgi")  # PHP under the path
    assert get(stack, "/private/index.php")[0] == 401  # no regex location gets around it
    assert get(stack, "/private/index.php", good) == (200, "secret from fpm-fcgi")
    assert get(stack, "/private/page.html", good) == (200, "secret page")
    assert get(stack, "/private/page.html", ("bob", "wrong pass"))[0] == 401
    assert get(stack, "/private/page.html", ("eve", "correct horse"))[0] == 401
    assert get(stack, "/open.html") == (200, "open page")  # other paths stay open

    # The password file: root's, nginx's group may read it, nobody else; a bcrypt hash; in
    # the root-owned home, outside the web root.
    home = stack.homes / NAME
    pwfile = home / AUTH_DIR / auth_file_name(DOMAIN, "/private")
    info = pwfile.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (info.st_uid, info.st_gid) == (0, int(_gid("nogroup")))
    line = pwfile.read_text()
    assert line.startswith("bob:$2b$") and "correct horse" not in line
    assert not str(pwfile).startswith(str(home / "sites"))
    assert "correct horse" not in str(site.options) and "$2b$" in str(site.options)

    # The API and the audit show users by name, never the hash.
    api = login(customer).get(f"/api/v1/websites/{site.uuid}/").json()
    assert api["options"]["auth_paths"] == [{"path": "/private", "users": [{"name": "bob"}]}]
    entry = AuditEntry.objects.filter(action="website.update").latest("id")
    assert "$2b$" not in str(entry.changes) and "bob" in str(entry.changes)

    # A second user; a new password replaces the old one.
    with run_ops():
        services.do_set_auth_user(
            site, actor=customer, data={"path": "/private", "name": "ann", "password": "ann pass 1"}
        )
        services.do_set_auth_user(
            site, actor=customer, data={"path": "/private", "name": "bob", "password": "new horse"}
        )
    wait_status(stack, "/private/page.html", 200, ("bob", "new horse"))
    assert get(stack, "/private/page.html", ("ann", "ann pass 1"))[0] == 200
    assert get(stack, "/private/page.html", good)[0] == 401

    # Sending the options back as read (users without passwords) keeps every password.
    with run_ops():
        resp = login(customer).patch(
            f"/api/v1/websites/{site.uuid}/",
            {
                "options": {
                    **api["options"],
                    "auth_paths": [
                        {"path": "/private", "users": [{"name": "ann"}, {"name": "bob"}]}
                    ],
                }
            },
            content_type="application/json",
        )
    assert resp.status_code == 200, resp.content
    assert get(stack, "/private/page.html", ("ann", "ann pass 1"))[0] == 200

    # Bad input is refused before anything is written.
    for data in (
        {"path": "/a b", "name": "x", "password": "long enough"},
        {"path": "/a;b", "name": "x", "password": "long enough"},
        {"path": "/a{", "name": "x", "password": "long enough"},
        {"path": '/a"', "name": "x", "password": "long enough"},
        {"path": "admin", "name": "x", "password": "long enough"},
        {"path": "/", "name": "x", "password": "long enough"},
        {"path": "/b", "name": "x:y", "password": "long enough"},
        {"path": "/b", "name": "x y", "password": "long enough"},
        {"path": "/b", "name": "x", "password": "short"},
        {"path": "/b", "name": "x", "password": "line\nbreak!"},
    ):
        with pytest.raises(ValidationError):
            services.do_protect_path(site, actor=customer, data=data)

    # Removing the protection removes the file; the path is open again.
    with run_ops():
        services.do_unprotect_path(site, actor=customer, data={"path": "/private"})
    wait_status(stack, "/private/page.html", 200)
    assert not pwfile.exists()


def _gid(group: str) -> int:
    import grp

    return grp.getgrnam(group).gr_gid


@pytest.fixture
def f2b():
    """A private fail2ban-server: its own copy of the configuration, database and socket,
    and the dummy ban action (never the kernel's firewall)."""
    server_bin = need("fail2ban-server")
    need("fail2ban-client")
    base = world_readable_tmp("uhp-f2b-auth-")
    conf = base / "conf"
    shutil.copytree("/etc/fail2ban", conf)
    (conf / "jail.d" / "defaults-debian.conf").unlink(missing_ok=True)
    (conf / "fail2ban.local").write_text(f"[Definition]\ndbfile = {base}/db.sqlite3\n")
    (conf / "action.d" / "dummy.local").write_text(f"[Init]\ntarget = {base}/dummy\n")
    (base / "auth.log").touch()
    sock, pid = base / "f2b.sock", base / "f2b.pid"
    subprocess.Popen(  # noqa: S603 - fixed argv
        [server_bin, "-f", "-x", "-c", str(conf), "-s", str(sock), "-p", str(pid)]
        + ["--logtarget", str(base / "f2b.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: sock.exists() and pid.exists())
    yield base
    stop_pidfile(pid)
    shutil.rmtree(base, ignore_errors=True)


def f2b_client(base: Path, *args: str) -> str:
    argv = ["fail2ban-client", "-s", str(base / "f2b.sock"), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout  # noqa: S603


def test_wrong_passwords_get_the_client_banned(stack, admin_user, customer, run_ops, f2b):
    site, server = php_site(stack, admin_user, customer, run_ops)
    with run_ops():
        services.do_protect_path(
            site, actor=customer, data={"path": "/private", "name": "bob", "password": "right one"}
        )
    wait_status(stack, "/private/page.html", 401)
    # fail2ban watches nginx's main error log and every site's (a glob read at load).
    error_log = stack.homes / NAME / "logs" / f"{DOMAIN}.error.log"
    assert error_log.exists()
    server.profile = {
        **server.profile,
        "fail2ban_conf_dir": str(f2b / "conf"),
        "fail2ban_socket": str(f2b / "f2b.sock"),
        "fail2ban_banaction": "dummy",
        "fail2ban_sshd_log": str(f2b / "auth.log"),
        "fail2ban_maxretry": 3,
    }
    server.components = {"prepared_at": "2026-01-01T00:00:00"}
    server.save()
    result = Engine(server, connection.open_transport(server)).apply({F2B_UNIT})
    assert not result.failed_units, result.failed_units
    assert str(error_log) in f2b_client(f2b, "get", "nginx-http-auth", "logpath")

    assert get(stack, "/private/page.html", ("bob", "right one"))[0] == 200  # not counted
    for attempt in range(3):
        status, _ = get(stack, "/private/page.html", ("bob", f"guess {attempt}"), CLIENT)
        assert status == 401
    assert "password mismatch, client: " + CLIENT in error_log.read_text()
    wait_until(lambda: CLIENT in f2b_client(f2b, "status", "nginx-http-auth"), timeout=20)
    status = f2b_client(f2b, "status", "nginx-http-auth")
    assert "Currently banned:\t1" in status and "127.0.0.1" not in status
