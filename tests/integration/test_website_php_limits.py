"""The plan's PHP limits in a site's pool: rendered by the panel, accepted by the real
``php-fpm -t``, and what PHP itself reports through the site (ini_get over nginx); a plan
change reaches the pool. Over SSH to a private sshd, nginx and php-fpm on loopback."""

from __future__ import annotations

import subprocess
import time

import pytest
from django.core.exceptions import ValidationError

from tests.conftest import make_user
from tests.integration.web_stack import WebStack, drop_user
from websites import plans, services
from websites.apply import PhpLimits, render_pool
from websites.models import Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST = "127.0.0.21"
EMAIL = "uhpphpl@example.com"  # account name "uhpphpl": a real Linux user in the tests
NAME = "uhpphpl"
PROBE = (
    "<?php echo implode(' ', [ini_get('memory_limit'), ini_get('max_execution_time'),"
    " ini_get('upload_max_filesize'), ini_get('post_max_size'),"
    " ini_set('memory_limit', '2048M') === false ? 'locked' : 'raised']);"
)


@pytest.fixture(scope="module")
def stack():
    web = WebStack(HOST, NAME, php=True)
    yield web
    web.stop()


@pytest.fixture
def run_ops(q_sync, django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_the_plans_php_limits_reach_the_pool_and_php(stack, admin_user, run_ops):
    drop_user(NAME)
    customer = make_user(EMAIL, "customer")
    assert customer.account_name == NAME
    server = stack.server(admin_user, facts={"php_versions": ["8.2"]})
    plan = plans.do_create_plan(
        actor=admin_user,
        data={
            "name": "PHP small",
            "php_versions": "8.2",
            "php_max_children": 3,
            "php_memory_limit_mb": 96,
            "php_max_execution_time": 17,
            "php_upload_max_mb": 9,
        },
    )
    plans.do_subscribe(customer, plan, actor=admin_user)
    with run_ops():
        site = services.do_create_website(
            actor=admin_user,
            data={
                "domain": "limits.php.test",
                "server": server,
                "owner": customer,
                "kind": "php",
                "php_version": "8.2",
            },
        )
    site.refresh_from_db()
    assert site.status == "active", site.status_message
    pool = stack.php / "pool.d" / f"{site.pool_name}.conf"
    text = pool.read_text()
    assert "pm.max_children = 3\n" in text
    assert "php_admin_value[memory_limit] = 96M\n" in text
    # The real php-fpm accepts the rendered pool (the engine ran the same test).
    test = subprocess.run(
        ["php-fpm8.2", "-t", "-y", str(stack.php / "php-fpm.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stderr
    public = stack.homes / NAME / "sites" / "limits.php.test" / "public"
    (public / "ini.php").write_text(PROBE)
    status, body = stack.nginx.get("limits.php.test", "/ini.php")
    assert (status, body) == (200, "96M 17 9M 9M locked"), body
    # PHP's mail() sends with the site's own envelope sender (mail: signed, not refused).
    (public / "mail.php").write_text("<?php echo ini_get('sendmail_path');")
    assert stack.nginx.get("limits.php.test", "/mail.php") == (
        200,
        "/usr/sbin/sendmail -t -i -f noreply@limits.php.test",
    )

    # A plan change reaches the pool (its sites are applied again).
    with run_ops():
        plans.do_update_plan(
            plan, actor=admin_user, data={"php_memory_limit_mb": 200, "php_max_children": 7}
        )
    assert "pm.max_children = 7\n" in pool.read_text()
    end = time.monotonic() + 10
    while stack.nginx.get("limits.php.test", "/ini.php")[1] != "200M 17 9M 9M locked":
        assert time.monotonic() < end, stack.nginx.get("limits.php.test", "/ini.php")
        time.sleep(0.1)

    with run_ops():
        services.do_delete_website(Website.objects.get(pk=site.pk), actor=admin_user)
    assert not pool.exists()


@pytest.mark.parametrize(
    "limits",
    [
        PhpLimits(max_children=0),
        PhpLimits(memory_limit_mb=10**6),
        PhpLimits(max_execution_time="30\nphp_admin_value[open_basedir] = /"),
        PhpLimits(upload_max_mb=True),
    ],
)
def test_only_numbers_in_range_are_rendered(limits, admin_user):
    site = Website(domain="x.php.test", kind="php", php_version="8.2")
    profile = type(
        "P",
        (),
        {"webroot_base": "/home", "php_socket_dir": "/run/php", "php_listen_owner": "www-data"},
    )()
    with pytest.raises(ValidationError):
        render_pool(site, profile, "acct", limits)


@pytest.mark.parametrize("domain", ["x.php.test -f root", "X.PHP.test\nphp_value[a] = b", ""])
def test_the_sendmail_path_takes_only_a_strict_domain(domain):
    from websites.apply import sendmail_path

    assert sendmail_path(Website(domain="x.php.test")) == (
        "/usr/sbin/sendmail -t -i -f noreply@x.php.test"
    )
    with pytest.raises(ValidationError):
        sendmail_path(Website(domain=domain))


def test_plan_limits_are_checked(admin_user, reseller):
    with pytest.raises(ValidationError) as err:
        plans.do_create_plan(actor=admin_user, data={"name": "big", "php_max_children": 1000})
    assert "php_max_children" in err.value.message_dict
    own = plans.do_create_plan(actor=admin_user, data={"name": "res", "php_memory_limit_mb": 256})
    plans.do_subscribe(reseller, own, actor=admin_user)
    with pytest.raises(ValidationError) as err:
        plans.do_create_plan(actor=reseller, data={"name": "mine", "php_memory_limit_mb": 512})
    assert err.value.message_dict["php_memory_limit_mb"] == ["Your own plan allows at most 256."]
