"""Bandwidth from access logs over the loopback sshd: bytes of nginx "combined" lines are
added to the site's month, a second count reads only what is new, a rotated log is finished
from LOG.1 and the new file read from its start, and the month counts against the plan."""

from __future__ import annotations

import shutil

import pytest

from servers import connection
from tests.integration.conftest import world_readable_tmp
from websites import plans
from websites.bandwidth import GB, measure_server, this_month
from websites.models import SiteTraffic, SystemAccount, Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def line(status: int, sent: int | str) -> str:
    return (
        f'203.0.113.9 - - [23/Nov/2026:20:00:00 +0000] "GET /a b HTTP/1.1" {status} {sent} '
        '"-" "curl/7.88"\n'
    )


@pytest.fixture
def home():
    base = world_readable_tmp("uhp-bw-")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_counts_new_bytes_rotation_and_plan(ssh_server, home, customer, admin_user):
    ssh_server.profile = {"webroot_base": str(home)}
    ssh_server.save()
    name = customer.account_name
    SystemAccount.objects.create(server=ssh_server, user=customer, name=name)
    site = Website.objects.create(domain="bw.example.com", server=ssh_server, owner=customer)
    other = Website.objects.create(domain="quiet.example.com", server=ssh_server, owner=customer)
    logs = home / name / "logs"
    logs.mkdir(parents=True)
    log = logs / "bw.example.com.access.log"
    log.write_text(line(200, 1000) + line(404, 150) + line(304, "-") + line(200, 0))
    t = connection.open_transport(ssh_server)

    assert measure_server(t, ssh_server) == 1150
    with open(log, "a") as f:
        f.write(line(200, 70))
    assert measure_server(t, ssh_server) == 70  # only what is new
    assert measure_server(t, ssh_server) == 0

    # logrotate: the old file moves to .1 (nginx writes on until it reopens), a new one starts
    log.rename(logs / "bw.example.com.access.log.1")
    with open(logs / "bw.example.com.access.log.1", "a") as f:
        f.write(line(200, 5))
    log.write_text(line(200, 9))
    assert measure_server(t, ssh_server) == 14
    traffic = SiteTraffic.objects.get(website=site, month=this_month())
    assert traffic.bytes == 1150 + 70 + 14
    assert not SiteTraffic.objects.filter(website=other).exists()  # no log yet: nothing

    SiteTraffic.objects.filter(pk=traffic.pk).update(bytes=3 * GB + 1)
    plan = plans.do_create_plan(actor=admin_user, data={"name": "Small", "bandwidth_gb": 3})
    rows = {r["name"]: r for r in plans.usage_report(customer, plan)}
    assert rows["Gb of bandwidth"]["used"] == 4 and rows["Gb of bandwidth"]["over"]


def test_a_count_whose_connection_drops_moves_nothing(ssh_server, home, customer, monkeypatch):
    """The server read the log, but the answer never came back: no bytes are added and the
    offset stays, so the next count adds them exactly once."""
    from servers.transport import ConnectionLost
    from tests.integration.faults import drop_after

    ssh_server.profile = {"webroot_base": str(home)}
    ssh_server.save()
    name = customer.account_name
    SystemAccount.objects.create(server=ssh_server, user=customer, name=name)
    site = Website.objects.create(domain="drop.example.com", server=ssh_server, owner=customer)
    logs = home / name / "logs"
    logs.mkdir(parents=True)
    (logs / "drop.example.com.access.log").write_text(line(200, 1000) + line(200, 234))

    dropped = drop_after(monkeypatch, lambda argv: "panel-bandwidth" in argv)
    with pytest.raises(ConnectionLost):
        measure_server(connection.open_transport(ssh_server), ssh_server)
    assert dropped and "panel-bandwidth" in dropped[0]
    site.refresh_from_db()
    assert site.access_log_offset in (0, None)
    assert not SiteTraffic.objects.filter(website=site).exists()

    assert measure_server(connection.open_transport(ssh_server), ssh_server) == 1234
    assert measure_server(connection.open_transport(ssh_server), ssh_server) == 0
    assert SiteTraffic.objects.get(website=site, month=this_month()).bytes == 1234
