"""Prepare server over the loopback sshd against this machine's own dpkg and apt: nginx and
PHP-FPM 8.2 are installed here, so the first run installs nothing (dpkg-query says so),
writes the include line into a private nginx's conf.d, disables a stock default site and
records the components; a second run changes nothing; a PHP version apt does not know fails
cleanly and records nothing. A server without nginx refuses sites."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEntry, Operation
from servers import services
from servers.models import DirtyUnit, Server
from tests.conftest import login
from tests.integration.conftest import need, stop_pidfile, world_readable_tmp
from websites import services as website_services

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def nginx_tree():
    need("nginx")
    need("dpkg-query")
    base = world_readable_tmp("uhp-prepare-")
    for sub in ("conf", "conf.d", "logs", "sites-available", "sites-enabled", "tmp"):
        (base / sub).mkdir()
    (base / "conf" / "nginx.conf").write_text(
        f"pid {base}/nginx.pid;\nerror_log {base}/logs/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {base}/tmp;\n"
        f"  include {base}/conf.d/*.conf;\n  include {base}/sites-enabled/*;\n}}\n"
    )
    (base / "sites-available" / "default").write_text("server { listen 127.0.0.1:9; }\n")
    os.symlink("../sites-available/default", base / "sites-enabled" / "default")
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def daemons(nginx_tree):
    """Private configurations for what Prepare server starts (nginx, PHP-FPM 8.2, fail2ban
    with a dummy ban action), none running yet; stopped afterwards whoever started them."""
    need("php-fpm8.2")
    need("fail2ban-client")
    base = nginx_tree
    php = base / "php"
    (php / "pool.d").mkdir(parents=True)
    (php / "pool.d" / "base.conf").write_text(
        f"[base]\nuser = nobody\ngroup = nogroup\nlisten = {php}/base.sock\n"
        "pm = static\npm.max_children = 1\n"
    )
    (php / "php-fpm.conf").write_text(
        f"[global]\npid = {php}/run/php-fpm.pid\nerror_log = {php}/error.log\n"
        f"daemonize = yes\ninclude={php}/pool.d/*.conf\n"
    )
    f2b = base / "f2b"
    shutil.copytree("/etc/fail2ban", f2b / "conf")
    (f2b / "conf" / "jail.d" / "defaults-debian.conf").unlink(missing_ok=True)
    (f2b / "conf" / "fail2ban.local").write_text(
        f"[Definition]\ndbfile = {f2b}/db.sqlite3\npidfile = {f2b}/run/f2b.pid\n"
        f"logtarget = {f2b}/f2b.log\n"
    )
    (f2b / "conf" / "action.d" / "dummy.local").write_text(f"[Init]\ntarget = {f2b}/dummy\n")
    (f2b / "auth.log").touch()
    (base / "logs" / "error.log").touch()
    (base / "www").mkdir()
    need("supervisord")
    sv = base / "sv"
    sv.mkdir()
    (sv / "supervisord.conf").write_text(
        f"[unix_http_server]\nfile={sv}/supervisor.sock\nchmod=0700\n"
        f"[supervisord]\nlogfile={sv}/supervisord.log\npidfile={sv}/supervisord.pid\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{sv}/supervisor.sock\n"
        f"[include]\nfiles = {sv}/conf.d/*.conf\n"
    )
    yield {"php": php, "f2b": f2b, "sv": sv}
    subprocess.run(
        ["supervisorctl", "-c", str(sv / "supervisord.conf"), "shutdown"],
        capture_output=True,
        check=False,
    )
    subprocess.run(
        ["fail2ban-client", "-s", str(f2b / "run" / "f2b.sock"), "stop"],
        capture_output=True,
        check=False,
    )
    stop_pidfile(php / "run" / "php-fpm.pid")
    stop_pidfile(base / "nginx.pid")


@pytest.fixture
def server(ssh_server, nginx_tree, daemons):
    base, php, f2b, sv = nginx_tree, daemons["php"], daemons["f2b"], daemons["sv"]
    ssh_server.profile = {
        "state_dir": str(base / "state"),
        "nginx_conf": str(base / "conf" / "nginx.conf"),
        "nginx_conf_d": str(base / "conf.d"),
        "nginx_sites_dir": str(base / "panel.d"),
        "nginx_stock_site": str(base / "sites-enabled" / "default"),
        "nginx_test": ["nginx", "-t", "-q", "-p", f"{base}/", "-c", "{conf}"],
        "nginx_start": ["nginx", "-p", f"{base}/", "-c", "{conf}"],
        "nginx_pid_file": str(base / "nginx.pid"),
        "nginx_error_log": str(base / "logs" / "error.log"),
        "webroot_base": str(base / "www"),
        "php_conf": str(php / "php-fpm.conf"),
        "php_pool_dir": str(php / "pool.d"),
        "php_pid_file": str(php / "run" / "php-fpm.pid"),
        "fail2ban_conf_dir": str(f2b / "conf"),
        "fail2ban_socket": str(f2b / "run" / "f2b.sock"),
        "fail2ban_banaction": "dummy",
        "fail2ban_sshd_log": str(f2b / "auth.log"),
        "tls_dir": str(base / "tls"),
        "acme_challenge_dir": str(base / "acme"),
        "supervisor_conf": str(sv / "supervisord.conf"),
    }
    ssh_server.save()
    return ssh_server


def prepare(server, admin, capture, versions):
    with capture(execute=True):
        op = services.do_prepare_server(server, actor=admin, data={"php_versions": versions})
    op.refresh_from_db()
    return op, " ".join(op.lines.values_list("message", flat=True))


def test_prepare_installed_packages_is_a_no_op_that_records_components(
    server, nginx_tree, daemons, admin_user, q_sync, django_capture_on_commit_callbacks
):
    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, "8.2")
    assert op.state == "succeeded", (op.error, log)
    assert "nothing to install" in log and "(nothing installed)" in op.message
    include = nginx_tree / "conf.d" / "hosting-panel.conf"
    assert f"include {nginx_tree}/panel.d/*.conf;" in include.read_text()
    assert not (nginx_tree / "sites-enabled" / "default").exists()  # Debian's stock site
    assert (nginx_tree / "panel.d").is_dir() and (nginx_tree / "tls").is_dir()
    server.refresh_from_db()
    assert server.components["nginx"] and server.components["php"] == ["8.2"]
    # No systemd here: app sites run under supervisord, which Prepare installs and starts too.
    assert set(server.components["packages"]) == {"nginx", "php8.2-fpm", "fail2ban", "supervisor"}
    # Each daemon was started by its own command, and the jails are live.
    for name in ("nginx", "php-fpm8.2", "fail2ban", "supervisord"):
        assert f"Started {name} (no systemd here)" in log, log
    f2b = daemons["f2b"]
    status = subprocess.run(
        ["fail2ban-client", "-s", str(f2b / "run" / "f2b.sock"), "status"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "nginx-http-auth, sshd" in status
    assert "banaction = dummy" in (f2b / "conf" / "jail.d" / "hosting-panel.local").read_text()
    assert not DirtyUnit.objects.filter(server=server, unit="fail2ban:jails").exists()
    nginx_pid = (nginx_tree / "nginx.pid").read_text()
    assert "8.2" in server.facts["php_versions"] and server.facts["services"]["nginx"]
    assert AuditEntry.objects.filter(action="server.prepare").count() == 1

    mtime = include.stat().st_mtime_ns
    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, ["8.2"])
    assert op.state == "succeeded" and "Wrote" not in log
    assert include.stat().st_mtime_ns == mtime
    for name in ("nginx", "php-fpm8.2", "fail2ban", "supervisord"):  # nothing started twice
        assert f"{name} runs already" in log and f"Started {name}" not in log, log
    assert (nginx_tree / "nginx.pid").read_text() == nginx_pid


def test_a_daemon_that_does_not_start_fails_the_operation(
    server, nginx_tree, admin_user, q_sync, django_capture_on_commit_callbacks
):
    profile = dict(server.profile)
    profile["php_start"] = ["php-fpm{php}", "-y", str(nginx_tree / "missing.conf")]
    Server.objects.filter(pk=server.pk).update(profile=profile)
    server.refresh_from_db()
    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, "8.2")
    assert op.state == "failed", log
    assert "php-fpm8.2 does not start" in op.error, op.error


def _half_installed(root, postinst: str | None = None) -> None:
    """A dpkg database under ``root`` with the package uhp-fake unpacked and not configured,
    as an install interrupted between the two leaves it (real dpkg, its own --root)."""
    need("dpkg-deb")
    pkg = root.parent / "uhp-fake-pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr" / "share" / "uhp-fake").mkdir(parents=True)
    (pkg / "usr" / "share" / "uhp-fake" / "README").write_text("a fake package\n")
    (pkg / "DEBIAN" / "control").write_text(
        "Package: uhp-fake\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: Tests <tests@example.com>\nDescription: a half-installed package\n"
    )
    if postinst is not None:
        (pkg / "DEBIAN" / "postinst").write_text(postinst)
        (pkg / "DEBIAN" / "postinst").chmod(0o755)
    admin = root / "var" / "lib" / "dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True)
    for name in ("status", "available"):
        (admin / name).touch()
    deb = root.parent / "uhp-fake.deb"
    subprocess.run(
        ["dpkg-deb", "-b", "-Zgzip", str(pkg), str(deb)], check=True, capture_output=True
    )
    subprocess.run(
        ["dpkg", f"--root={root}", "--unpack", str(deb)], check=True, capture_output=True
    )
    assert _dpkg_status(root) == "install ok unpacked"


def _dpkg_status(root) -> str:
    argv = ["dpkg-query", f"--root={root}", "-W", "-f=${Status}", "uhp-fake"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _with_dpkg_root(server, root) -> None:
    profile = {**server.profile, "dpkg": ["dpkg", f"--root={root}"]}
    Server.objects.filter(pk=server.pk).update(profile=profile)
    server.refresh_from_db()


def test_an_interrupted_install_is_configured_first(
    server, nginx_tree, admin_user, q_sync, django_capture_on_commit_callbacks
):
    """dpkg --audit reports the half-installed package: prepare runs dpkg --configure -a
    over SSH before anything else, says so in its log, and goes on."""
    root = nginx_tree / "dpkg-root"
    _half_installed(root)
    _with_dpkg_root(server, root)
    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, "8.2")
    assert op.state == "succeeded", (op.error, log)
    assert "dpkg reports an interrupted install" in log and "uhp-fake" in log, log
    assert "Running dpkg --configure -a before anything else" in log
    assert _dpkg_status(root) == "install ok installed"
    # Nothing left to finish: the next run does not configure again.
    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, "8.2")
    assert op.state == "succeeded" and "dpkg --configure -a" not in log, log


def test_a_configure_that_fails_stops_prepare_with_dpkgs_words(
    server, nginx_tree, admin_user, q_sync, django_capture_on_commit_callbacks
):
    root = nginx_tree / "dpkg-root"
    _half_installed(root, postinst="#!/bin/sh\nexit 1\n")
    _with_dpkg_root(server, root)
    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, "8.2")
    assert op.state == "failed", log
    assert "dpkg --configure -a failed" in op.error and "uhp-fake" in op.error, op.error
    server.refresh_from_db()
    assert server.components == {}  # nothing recorded as prepared
    assert _dpkg_status(root) != "install ok installed"


def test_unknown_php_version_fails_cleanly(
    server, admin_user, q_sync, django_capture_on_commit_callbacks
):
    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, "9.9")
    assert op.state == "failed"
    assert "php9.9-fpm cannot be installed: no such package" in op.error, (op.error, log)
    server.refresh_from_db()
    assert server.components == {}


def test_bad_versions_and_missing_nginx_are_refused(server, admin_user, customer):
    for bad in ("8.2; rm -rf /", "latest", ["8.2", "../x"]):
        with pytest.raises(ValidationError):
            services.do_prepare_server(server, actor=admin_user, data={"php_versions": bad})
    api = login(admin_user)
    url = f"/api/v1/servers/{server.uuid}/prepare/"
    resp = api.post(url, {"php_versions": ["8.2;x"]}, content_type="application/json")
    assert resp.status_code == 400 and "php_versions" in resp.json(), resp.content
    assert login(customer).post(url, {}, content_type="application/json").status_code == 404
    assert not Operation.objects.exists()
    Server.objects.filter(pk=server.pk).update(facts={"services": {"nginx": False}})
    server.refresh_from_db()
    with pytest.raises(ValidationError) as caught:
        website_services.do_create_website(
            actor=admin_user,
            data={"domain": "needs.example.com", "server": server, "owner": customer},
        )
    assert "nginx is not installed on web1: prepare the server first" in str(caught.value)
