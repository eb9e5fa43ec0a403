"""PHP-FPM pools through the apply engine, validated and reloaded by a private php-fpm, and PHP
sites (pool + vhost as one unit) verified through a private nginx."""

import shutil
import subprocess
import time

import pytest

from servers import connection
from servers.engine import ApplyError, registry
from servers.engine.engine import Engine
from tests import support
from tests.integration.conftest import need, stop_pidfile, world_readable_tmp

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def pool(name: str, base, extra: str = "") -> str:
    return (
        f"[{name}]\nuser = www-data\ngroup = www-data\nlisten = {base}/{name}.sock\n"
        "pm = static\npm.max_children = 1\n" + extra
    )


@pytest.fixture
def php_fpm():
    binary = need("php-fpm8.2")
    base = world_readable_tmp("uhp-php-")
    (base / "pool.d").mkdir()
    (base / "www").mkdir()
    (base / "www" / "i.php").write_text("<?php echo 'php ok';")
    for p in (base / "www", base / "www" / "i.php"):
        p.chmod(0o755)
    (base / "pool.d" / "base.conf").write_text(pool("base", base))
    conf = base / "php-fpm.conf"
    conf.write_text(
        f"[global]\npid = {base}/php-fpm.pid\nerror_log = {base}/error.log\n"
        f"daemonize = yes\ninclude={base}/pool.d/*.conf\n"
    )
    subprocess.run([binary, "-y", str(conf)], check=True)
    end = time.monotonic() + 5
    while not (base / "base.sock").exists() and time.monotonic() < end:
        time.sleep(0.05)
    yield base
    stop_pidfile(base / "php-fpm.pid")
    end = time.monotonic() + 5
    while (base / "base.sock").exists() and time.monotonic() < end:
        time.sleep(0.05)
    shutil.rmtree(base, ignore_errors=True)


def php_profile(base) -> dict:
    return {
        "state_dir": str(base / "state"),
        "php_conf": str(base / "php-fpm.conf"),
        "php_pool_dir": str(base / "pool.d"),
        "php_pid_file": str(base / "php-fpm.pid"),
    }


@pytest.fixture
def php_server(ssh_server, php_fpm):
    ssh_server.profile = php_profile(php_fpm)
    ssh_server.save()
    provider = support.PoolFiles()
    provider.pools = {}
    with registry.only_providers(provider):
        yield provider


def apply(server, units=None):
    server.refresh_from_db()
    return Engine(server, connection.open_transport(server)).apply(units)


def test_pools_applied_validated_and_isolated(ssh_server, php_server, php_fpm):
    php_server.pools = {"pool:alpha": pool("alpha", php_fpm), "pool:beta": pool("beta", php_fpm)}
    result = apply(ssh_server)
    assert result.reloaded == ["php-fpm8.2"] and len(result.written) == 2
    assert (php_fpm / "alpha.sock").exists() and (php_fpm / "beta.sock").exists()
    assert apply(ssh_server).written == []

    php_server.pools["pool:beta"] = pool("beta", php_fpm, "pm = sometimes\n")
    php_server.pools["pool:gamma"] = pool("gamma", php_fpm)
    result = apply(ssh_server)
    assert set(result.failed_units) == {"pool:beta"}
    assert "pm" in result.failed_units["pool:beta"]
    assert ".panel-" not in result.failed_units["pool:beta"]  # staging paths never shown
    assert (php_fpm / "pool.d" / "beta.conf").read_text() == pool("beta", php_fpm)
    assert (php_fpm / "gamma.sock").exists() and (php_fpm / "alpha.sock").exists()


def test_missing_include_is_a_clear_error(ssh_server, php_server, php_fpm):
    conf = php_fpm / "php-fpm.conf"
    conf.write_text(conf.read_text().replace(f"include={php_fpm}/pool.d/*.conf", ""))
    php_server.pools = {"pool:alpha": pool("alpha", php_fpm)}
    with pytest.raises(ApplyError, match="does not include"):
        apply(ssh_server)
    assert not (php_fpm / "pool.d" / "alpha.conf").exists()


def test_php_master_gone_is_reported_not_hidden(ssh_server, php_server, php_fpm):
    php_server.pools = {"pool:alpha": pool("alpha", php_fpm)}
    stop_pidfile(php_fpm / "php-fpm.pid")
    end = time.monotonic() + 5
    while (php_fpm / "base.sock").exists() and time.monotonic() < end:
        time.sleep(0.05)
    with pytest.raises(ApplyError, match="php-fpm is not running"):
        apply(ssh_server)


@pytest.fixture
def php_sites(web_server, nginx, php_fpm):
    web_server.profile = {**web_server.profile, **php_profile(php_fpm)}
    web_server.save()
    provider = support.PhpSiteFiles()
    provider.sites, provider.base = {}, str(php_fpm)
    with registry.only_providers(provider):
        yield provider


def test_php_site_serves_through_its_pool(web_server, nginx, php_fpm, php_sites):
    sock = str(php_fpm / "shop.sock")
    php_sites.sites = {"shop": (sock, sock)}
    result = apply(web_server)
    assert not result.failed_units and result.reloaded == ["php-fpm8.2", "nginx"]
    assert nginx.get("shop.php.example", "/i.php") == (200, "php ok")


def test_site_whose_php_socket_is_missing_is_a_failed_apply(web_server, nginx, php_fpm, php_sites):
    """nginx -t and php-fpm -t both pass, nginx reloads, but the site answers 502: that unit
    is rolled back (pool and vhost) and reported failed; another site applies."""
    good = str(php_fpm / "good.sock")
    php_sites.sites = {"good": (good, good), "typo": (str(php_fpm / "typo.sock"), "/nowhere.sock")}
    result = apply(web_server)
    assert set(result.failed_units) == {"phpsite:typo"}
    assert "502" in result.failed_units["phpsite:typo"]
    assert not (nginx.sites / "typo.php.conf").exists()
    assert not (php_fpm / "pool.d" / "typo.conf").exists()
    assert nginx.get("good.php.example", "/i.php") == (200, "php ok")
    assert [d.name for d in nginx.sites.iterdir() if d.name.startswith(".")] == []
