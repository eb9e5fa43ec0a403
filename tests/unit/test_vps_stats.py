"""VPS statistics without libvirt: values derived from known counters, rollups and pruning
exact on known data, series for the chart, and the API with the VPS's own visibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import login
from vps import stats
from vps.models import Vps, VpsPlan, VpsRollup, VpsSample

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def vps(customer):
    plan = VpsPlan.objects.create(name="S", vcpus=2, memory_mib=1024, disk_gib=10)
    return Vps.objects.create(
        hostname="box", owner=customer, plan=plan, vcpus=2, state=Vps.State.RUNNING
    )


def _stats(cpu_s: float, rd: int, wr: int, rx: int, tx: int) -> dict:
    return {
        "state.state": 1,
        "cpu.time": int(cpu_s * 1e9),
        "vcpu.current": 2,
        "balloon.current": 1048576,
        "balloon.available": 1000000,
        "balloon.usable": 250000,
        "block.count": 2,
        "block.0.rd.bytes": rd,
        "block.0.wr.bytes": wr,
        "block.1.rd.bytes": 100,
        "block.1.wr.bytes": 0,
        "net.count": 1,
        "net.0.rx.bytes": rx,
        "net.0.tx.bytes": tx,
    }


def test_derive_gives_memory_now_and_cpu_and_rates_from_deltas():
    first, state = stats.derive(_stats(10, 1000, 2000, 5000, 600), {}, T0, 1)
    assert first == {
        "vcpus": 2,
        "mem_total": 1000000 * 1024,
        "mem_available": 250000 * 1024,
        "mem_used": 750000 * 1024,
        "mem_pct": 75.0,
    }
    assert state["cpu_time"] == 10 * 10**9 and state["disk_read"] == 1100
    # 60 s later: 30 CPU-seconds over 2 vCPUs is 25 %; bytes per second from the deltas.
    later = T0 + timedelta(seconds=60)
    second, _ = stats.derive(_stats(40, 7000, 2000, 65000, 1200), state, later, 1)
    assert second["cpu"] == 25.0
    assert second["disk_read"] == 100.0 and second["disk_write"] == 0.0
    assert second["net_rx"] == 1000.0 and second["net_tx"] == 10.0


def test_derive_after_a_domain_restart_gives_no_negative_figures():
    _, state = stats.derive(_stats(500, 10**6, 10**6, 10**6, 10**6), {}, T0, 2)
    values, _ = stats.derive(_stats(1, 10, 10, 10, 10), state, T0 + timedelta(seconds=60), 2)
    assert not {"cpu", "disk_read", "disk_write", "net_rx", "net_tx"} & values.keys()


def test_derive_without_a_guest_report_uses_the_host_rss():
    raw = {"cpu.time": 1, "balloon.current": 524288, "balloon.rss": 131072}
    values, _ = stats.derive(raw, {}, T0, 1)
    assert values["mem_total"] == 512 << 20 and values["mem_used"] == 128 << 20
    assert values["mem_pct"] == 25.0 and "mem_available" not in values


def _samples(vps, start: datetime, cpus: list[float], every: int = 60) -> None:
    VpsSample.objects.bulk_create(
        VpsSample(vps=vps, at=start + timedelta(seconds=i * every), values={"cpu": c, "vcpus": 2})
        for i, c in enumerate(cpus)
    )


@pytest.mark.django_db
def test_rollups_are_exact_and_idempotent(vps):
    # 10 minutes of samples: 5 per bucket.
    _samples(vps, T0, [10, 20, 30, 40, 50, 1, 2, 3, 4, 90])
    # The second bucket ends at 12:10; it is complete 60 s later.
    assert stats.roll_up(now=T0 + timedelta(minutes=10, seconds=59)) == 1
    assert stats.roll_up(now=T0 + timedelta(minutes=11)) == 1
    rows = list(VpsRollup.objects.order_by("start").values_list("start", "count", "values"))
    assert rows == [
        (T0, 5, {"cpu": [10, 30.0, 50]}),
        (T0 + timedelta(minutes=5), 5, {"cpu": [1, 20.0, 90]}),
    ]
    assert stats.roll_up(now=T0 + timedelta(hours=1)) == 0  # nothing new: nothing written
    assert VpsRollup.objects.count() == 2


@pytest.mark.django_db
def test_hourly_rollups_join_the_5_minute_ones_of_complete_hours(vps):
    # Two hours and 10 minutes of samples, one a minute: cpu i % 60 in the first hour, 100
    # in the second; the third hour is not over, so it gets no hourly row.
    _samples(vps, T0, [i % 60 for i in range(60)] + [100] * 60 + [7] * 10)
    stats.roll_up(now=T0 + timedelta(hours=2, minutes=11))
    hourly = list(
        VpsRollup.objects.filter(step=3600)
        .order_by("start")
        .values_list("start", "count", "values")
    )
    assert hourly == [
        (T0, 60, {"cpu": [0, 29.5, 59]}),
        (T0 + timedelta(hours=1), 60, {"cpu": [100, 100.0, 100]}),
    ]
    assert VpsRollup.objects.filter(step=300).count() == 26
    assert stats.roll_up(now=T0 + timedelta(hours=2, minutes=12)) == 0  # idempotent
    assert stats.roll_up(now=T0 + timedelta(hours=3, minutes=1)) == 1  # the third hour
    assert VpsRollup.objects.get(step=3600, start=T0 + timedelta(hours=2)).count == 10


@pytest.mark.django_db
def test_prune_keeps_48_hours_raw_30_days_of_5_minutes_and_a_year_of_hours(vps):
    now = T0 + timedelta(days=400)
    _samples(vps, now - timedelta(hours=48, seconds=1), [1])
    _samples(vps, now - timedelta(hours=47), [2])
    for step, age in ((300, timedelta(days=30, seconds=1)), (300, timedelta(days=29))):
        VpsRollup.objects.create(vps=vps, step=step, start=now - age, count=1)
    for age in (timedelta(days=365, seconds=1), timedelta(days=364)):
        VpsRollup.objects.create(vps=vps, step=3600, start=now - age, count=1)
    assert stats.prune(now=now) == {"raw": 1, "5m": 1, "1h": 1}
    assert list(VpsSample.objects.values_list("values__cpu", flat=True)) == [2]
    assert sorted(VpsRollup.objects.values_list("step", "start")) == [
        (300, now - timedelta(days=29)),
        (3600, now - timedelta(days=364)),
    ]


@pytest.mark.django_db
def test_24h_series_joins_rollups_and_the_newest_raw_samples(vps):
    _samples(vps, T0, [10, 20, 30, 40, 50, 60, 70])  # 12:00 .. 12:06
    stats.roll_up(now=T0 + timedelta(minutes=6, seconds=30))  # rolls 12:00-12:05 only
    found = stats.series(vps, "24h", now=T0 + timedelta(minutes=7))
    assert found["step"] == 300
    assert found["t"] == [int(T0.timestamp()), int(T0.timestamp()) + 300]
    assert found["metrics"]["cpu"] == {"min": [10, 60], "avg": [30.0, 65.0], "max": [50, 70]}
    assert found["metrics"]["net_rx"]["avg"] == [None, None]
    hour = stats.series(vps, "1h", now=T0 + timedelta(minutes=7))
    assert hour["step"] == 60 and hour["metrics"]["cpu"]["avg"] == [10, 20, 30, 40, 50, 60, 70]


@pytest.mark.django_db
def test_7d_series_joins_5_minute_rollups_into_hours(vps):
    # Two hours of rollups (12 a hour): cpu 10..30 in the first, 40..60 in the second.
    for i in range(24):
        low = 10 if i < 12 else 40
        VpsRollup.objects.create(
            vps=vps,
            start=T0 + timedelta(minutes=5 * i),
            count=5,
            values={"cpu": [low, low + 10, low + 20]},
        )
    now = T0 + timedelta(hours=2, minutes=1)
    _samples(vps, T0 + timedelta(hours=2), [90])  # not rolled up yet: ends the chart
    found = stats.series(vps, "7d", now=now)
    assert found["step"] == 3600
    assert found["t"] == [int((T0 + timedelta(hours=h)).timestamp()) for h in range(3)]
    assert found["metrics"]["cpu"] == {
        "min": [10, 40, 90],
        "avg": [20.0, 50.0, 90.0],
        "max": [30, 60, 90],
    }


@pytest.mark.django_db
def test_30d_and_1y_series_come_from_the_hourly_rollups(vps):
    # 48 hourly rollups over two days (cpu 10 on the first, 30 on the second), then raw
    # samples the hourly rollup has not reached: they end both charts.
    day = T0.replace(hour=0)
    for h in range(48):
        cpu = 10 if h < 24 else 30
        VpsRollup.objects.create(
            vps=vps,
            step=3600,
            start=day + timedelta(hours=h),
            count=60,
            values={"cpu": [cpu - 5, cpu, cpu + 5]},
        )
    VpsRollup.objects.create(  # a 5-minute row inside those days: not counted twice
        vps=vps, step=300, start=day + timedelta(hours=3), count=5, values={"cpu": [99, 99, 99]}
    )
    _samples(vps, day + timedelta(hours=48), [70, 80])
    now = day + timedelta(hours=48, minutes=2)
    month = stats.series(vps, "30d", now=now)
    assert month["step"] == 3600 and len(month["t"]) == 49
    assert (
        month["metrics"]["cpu"]["max"][:2] == [15, 15]
        and month["metrics"]["cpu"]["avg"][-1] == 75.0
    )
    year = stats.series(vps, "1y", now=now)
    assert year["step"] == 86400
    assert year["t"] == [int((day + timedelta(days=d)).timestamp()) for d in range(3)]
    assert year["metrics"]["cpu"] == {
        "min": [5, 25, 70],
        "avg": [10.0, 30.0, 75.0],
        "max": [15, 35, 80],
    }


@pytest.mark.django_db
def test_api_series_has_the_vps_visibility(vps, customer, reseller, mallory, admin_user):
    from django.utils import timezone

    _samples(vps, timezone.now() - timedelta(minutes=3), [5, 15])
    url = f"/api/v1/vps/{vps.uuid}/metrics/?range=1h"
    for user in (customer, reseller, admin_user):
        body = login(user).get(url).json()
        assert body["vps"] == str(vps.uuid) and body["range"] == "1h"
        assert [v for v in body["metrics"]["cpu"]["avg"] if v is not None] == [5, 15]
    assert login(mallory).get(url).status_code == 404
    assert login(customer).get(url.replace("1h", "2y")).status_code == 400
