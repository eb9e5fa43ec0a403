"""/api/v1/metrics/: visibility as the server's, series from the right source and step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring import storage
from monitoring.models import Rollup, Sample, ServerMonitor
from monitoring.series import series
from servers.models import Server
from tests.conftest import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(reseller):
    s = Server.objects.create(name="m1", address="93.184.216.34", owner=reseller)
    ServerMonitor.objects.create(server=s, latest={"cpu": 12.5, "mem_pct": 40.0})
    return s


def _fill(server, now, hours, every=30):
    count = int(hours * 3600 / every)
    Sample.objects.bulk_create(
        [
            Sample(
                server=server,
                at=now - timedelta(seconds=every * (count - i)),
                values={"cpu": float(i % 100), "mem_pct": 50.0},
            )
            for i in range(count)
        ]
    )


def test_list_and_series_follow_server_visibility(server, reseller, customer, mallory, admin_user):
    now = timezone.now()
    _fill(server, now, 1)
    for user, seen in ((reseller, True), (admin_user, True), (mallory, False), (customer, False)):
        client = login(user)
        listed = client.get("/api/v1/metrics/").json()["results"]
        assert [r["name"] for r in listed] == (["m1"] if seen else [])
        resp = client.get(f"/api/v1/metrics/{server.uuid}/?range=1h")
        assert resp.status_code == (200 if seen else 404)
    body = login(reseller).get(f"/api/v1/metrics/{server.uuid}/?range=1h&metrics=cpu").json()
    assert body["source"] == "raw" and body["step"] == 30
    assert list(body["metrics"]) == ["cpu"] and len(body["t"]) >= 118
    assert listed == [] and login(reseller).get("/api/v1/metrics/").json()["results"][0][
        "values"
    ] == {"cpu": 12.5, "mem_pct": 40.0}


@pytest.mark.parametrize(
    "query",
    ["range=2h", "range=24h&step=299", "range=1h&step=10", "metrics=nope", "range=1y&step=30"],
)
def test_bad_queries_answer_400(server, admin_user, query):
    resp = login(admin_user).get(f"/api/v1/metrics/{server.uuid}/?{query}")
    assert resp.status_code == 400, resp.content


def test_ranges_read_rollups_and_fill_the_tail_from_raw(server):
    now = timezone.now()
    _fill(server, now, 3)
    storage.roll_up(now)
    done = Rollup.objects.filter(server=server, step=300).order_by("-start").first()
    day = series(server, "24h", ["cpu"], now=now)
    assert day.source == "300s" and day.step == 300
    # The buckets after the last rollup come from the raw samples: the chart reaches now.
    assert day.t[-1] >= int(done.start.timestamp())
    assert day.t[-1] == int(storage.floor(now, 300).timestamp()) or day.t[-1] == int(
        storage.floor(now - timedelta(seconds=30), 300).timestamp()
    )
    # A rollup bucket carries the same min/avg/max as its raw samples.
    first = Rollup.objects.filter(server=server, step=300).order_by("start").first()
    i = day.t.index(int(first.start.timestamp()))
    assert [day.metrics["cpu"][k][i] for k in ("min", "avg", "max")] == first.values["cpu"]
    month = series(server, "30d", ["cpu"], now=now)
    assert month.source == "3600s" and len(month.t) in (3, 4)
    assert series(server, "1y", ["cpu"], now=now).step == 86400


def test_administrators_choose_the_collector_through_the_service(server, admin_user):
    from core.models import AuditEntry

    monitor = server.monitor
    client = login(admin_user)
    url = f"/admin/monitoring/servermonitor/{monitor.pk}/change/"
    assert client.get(url).status_code == 200
    client.post(url, {"method": "node_exporter", "exporter_url": "", "enabled": "on"})
    monitor.refresh_from_db()
    assert monitor.method == "ssh"  # refused: no URL
    resp = client.post(
        url,
        {
            "method": "node_exporter",
            "exporter_url": "http://10.0.0.5:9100/metrics",
            "enabled": "on",
        },
    )
    assert resp.status_code == 302
    monitor.refresh_from_db()
    assert monitor.method == "node_exporter" and monitor.counters == {}
    assert AuditEntry.objects.filter(action="monitoring.update").count() == 1


def test_thirty_days_take_hourly_rollups_as_they_are_then_the_raw_tail(server):
    now = storage.floor(timezone.now(), 3600) + timedelta(minutes=20)
    hours = [storage.floor(now, 3600) - timedelta(hours=h) for h in (3, 2, 1)]
    Rollup.objects.bulk_create(
        [
            Rollup(server=server, step=3600, start=at, count=120, values={"cpu": [i, i + 0.5, 9]})
            for i, at in enumerate(hours)
        ]
    )
    Sample.objects.bulk_create(
        [
            Sample(server=server, at=now - timedelta(minutes=m), values={"cpu": v})
            for m, v in ((15, 4.0), (5, 8.0))
        ]
    )
    month = series(server, "30d", ["cpu", "mem_pct"], now=now)
    assert month.source == "3600s" and month.step == 3600
    this_hour = int(storage.floor(now, 3600).timestamp())
    assert month.t == [int(h.timestamp()) for h in hours] + [this_hour]
    assert month.metrics["cpu"] == {
        "min": [0, 1, 2, 4.0],
        "avg": [0.5, 1.5, 2.5, 6.0],
        "max": [9, 9, 9, 8.0],
    }
    assert month.metrics["mem_pct"]["avg"] == [None] * 4
    # Re-bucketed to two hours (the general path), the same data agrees.
    pairs = series(server, "30d", ["cpu"], step=7200, now=now)
    merged = dict(zip(pairs.t, pairs.metrics["cpu"]["max"], strict=True))
    assert max(v for v in merged.values() if v is not None) == 9
    assert sum(v is not None for v in merged.values()) in (2, 3)


def test_a_thirty_day_chart_is_two_queries_whatever_its_length(
    server, reseller, django_assert_num_queries
):
    """The page's 30-day request: a month of hourly points read in one query (rollups) and
    the hour not rolled up yet in another (raw samples), however many points; the body is
    the series as it is."""
    now = timezone.now()
    hour = storage.floor(now, 3600)
    Sample.objects.create(server=server, at=hour, values={"cpu": 7.0, "procs": 99})
    client = login(reseller)
    url = f"/api/v1/metrics/{server.uuid}/?range=30d&metrics=cpu,procs,mem_pct"
    client.get(url)  # the session's first use
    with CaptureQueriesContext(connection) as empty:
        assert len(client.get(url).json()["t"]) == 1

    Rollup.objects.bulk_create(
        [
            Rollup(
                server=server,
                step=3600,
                start=hour - timedelta(hours=h),
                count=120,
                values={"cpu": [h, h + 0.25, h + 1], "procs": [100, 101.5, 103]},
            )
            for h in range(1, 24 * 30 + 1)
        ]
    )
    with django_assert_num_queries(2):
        month = series(server, "30d", ["cpu", "procs", "mem_pct"], now=now)
    assert len(month.t) == 24 * 30 + 1 and month.t[-1] == int(hour.timestamp())
    assert month.metrics["cpu"]["max"][:2] == [721, 720] and month.metrics["cpu"]["avg"][-1] == 7.0
    with django_assert_num_queries(len(empty.captured_queries)):
        body = client.get(url).json()
    assert body["t"] == month.t and body["metrics"]["cpu"] == month.metrics["cpu"]
    assert (
        body["metrics"]["procs"]["min"][0] == 100 and body["metrics"]["mem_pct"]["avg"][0] is None
    )
    assert body["source"] == "3600s" and body["step"] == 3600 and body["server"] == str(server.uuid)
