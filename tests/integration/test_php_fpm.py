"""PHP-FPM pools through the apply engine, validated and reloaded by a private php-fpm."""

import shutil
import subprocess
import time

import pytest

from servers import connection
from servers.apply import Engine
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
    time.sleep(0.2)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def php_server(ssh_server, php_fpm, settings):
    settings.PANEL_APPLY_PROVIDERS = ["tests.support.PoolFiles"]
    ssh_server.profile = {
        "state_dir": str(php_fpm / "state"),
        "php_conf": str(php_fpm / "php-fpm.conf"),
        "php_pool_dir": str(php_fpm / "pool.d"),
        "php_reload": ["pkill", "--signal", "USR2", "-F", str(php_fpm / "php-fpm.pid")],
    }
    ssh_server.save()
    support.PoolFiles.pools = {}
    yield ssh_server
    support.PoolFiles.pools = {}


def apply(server):
    server.refresh_from_db()
    return Engine(server, connection.open_transport(server)).apply()


def test_pools_applied_validated_and_isolated(php_server, php_fpm):
    support.PoolFiles.pools = {
        "website:alpha": pool("alpha", php_fpm),
        "website:beta": pool("beta", php_fpm),
    }
    result = apply(php_server)
    assert result.reloaded == ["php-fpm8.2"] and len(result.written) == 2
    assert (php_fpm / "alpha.sock").exists() and (php_fpm / "beta.sock").exists()
    assert apply(php_server).written == []

    support.PoolFiles.pools["website:beta"] = pool("beta", php_fpm, "pm = sometimes\n")
    support.PoolFiles.pools["website:gamma"] = pool("gamma", php_fpm)
    result = apply(php_server)
    assert set(result.failed_units) == {"website:beta"}
    assert "pm" in result.failed_units["website:beta"]
    assert str(php_fpm / "pool.d") in result.failed_units["website:beta"]
    assert (php_fpm / "pool.d" / "beta.conf").read_text() == pool("beta", php_fpm)
    assert (php_fpm / "gamma.sock").exists() and (php_fpm / "alpha.sock").exists()


def test_missing_include_is_a_clear_error(php_server, php_fpm):
    conf = php_fpm / "php-fpm.conf"
    conf.write_text(conf.read_text().replace(f"include={php_fpm}/pool.d/*.conf", ""))
    support.PoolFiles.pools = {"website:alpha": pool("alpha", php_fpm)}
    from servers.apply import ApplyError

    with pytest.raises(ApplyError, match="does not include"):
        apply(php_server)
