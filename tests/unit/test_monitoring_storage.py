"""Rollups and pruning exact on known data; the parsers on known text (SQLite and PG)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring import agentless, exporter, storage
from monitoring.collector import derive
from monitoring.models import Rollup, Sample
from servers.models import Server

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def servers(admin_user):
    return [
        Server.objects.create(name=f"s{i}", address=f"10.9.0.{i}", owner=admin_user) for i in (1, 2)
    ]


def _samples(server, start, count, every=30, cpu=lambda i: float(i)):
    Sample.objects.bulk_create(
        [
            Sample(
                server=server,
                at=start + timedelta(seconds=every * i),
                values={"cpu": cpu(i), "mem_pct": 50.0},
            )
            for i in range(count)
        ]
    )


def test_five_minute_and_hourly_rollups_are_exact(servers):
    a, b = servers
    _samples(a, T0, 240)  # two hours at 30 s: cpu 0..239
    _samples(b, T0, 240, cpu=lambda i: 100.0 - (i % 10))
    now = T0 + timedelta(hours=2, minutes=1, seconds=1)
    written = storage.roll_up(now)
    assert written == {300: 2 * 24, 3600: 2 * 2}
    first = Rollup.objects.get(server=a, step=300, start=T0)
    assert first.count == 10
    assert first.values["cpu"] == [0.0, 4.5, 9.0]  # min, avg, max of 0..9
    assert first.values["mem_pct"] == [50.0, 50.0, 50.0]
    last = Rollup.objects.get(server=a, step=300, start=T0 + timedelta(minutes=115))
    assert last.values["cpu"] == [230.0, 234.5, 239.0]
    hour = Rollup.objects.get(server=a, step=3600, start=T0 + timedelta(hours=1))
    assert hour.count == 120 and hour.values["cpu"] == [120.0, 179.5, 239.0]
    other = Rollup.objects.get(server=b, step=3600, start=T0)
    assert other.values["cpu"] == [91.0, 95.5, 100.0]
    # Idempotent: nothing new to roll up, nothing written twice.
    assert storage.roll_up(now) == {300: 0, 3600: 0}
    assert Rollup.objects.count() == 52


def test_incomplete_buckets_wait(servers):
    a, _ = servers
    _samples(a, T0, 12)  # 10:00:00 .. 10:05:30
    assert storage.roll_up(T0 + timedelta(minutes=5, seconds=59)) == {300: 0, 3600: 0}
    assert storage.roll_up(T0 + timedelta(minutes=6)) == {300: 1, 3600: 0}
    _samples(a, T0 + timedelta(minutes=6), 2)
    assert storage.roll_up(T0 + timedelta(minutes=11)) == {300: 1, 3600: 0}
    second = Rollup.objects.get(step=300, start=T0 + timedelta(minutes=5))
    assert second.count == 4 and second.values["cpu"] == [0.0, 5.5, 11.0]


def test_prune_keeps_exactly_the_retention(servers):
    a, _ = servers
    now = T0 + timedelta(days=400)
    Sample.objects.bulk_create(
        [
            Sample(server=a, at=now - timedelta(hours=48, seconds=1), values={}),
            Sample(server=a, at=now - timedelta(hours=48), values={}),
        ]
    )
    Rollup.objects.bulk_create(
        [
            Rollup(server=a, step=300, start=now - timedelta(days=30, seconds=300), count=1),
            Rollup(server=a, step=300, start=now - timedelta(days=30), count=1),
            Rollup(server=a, step=3600, start=now - timedelta(days=365, hours=1), count=1),
            Rollup(server=a, step=3600, start=now - timedelta(days=365), count=1),
        ]
    )
    assert storage.prune(now) == {"raw": 1, "300s": 1, "3600s": 1}
    assert Sample.objects.count() == 1 and Rollup.objects.count() == 2


PROC = """@stat
cpu  100 0 100 700 100 0 0 0 0 0
cpu0 50 0 50 350 50 0 0 0 0 0
cpu1 50 0 50 350 50 0 0 0 0 0
@loadavg
0.50 0.25 0.10 1/100 1234
@meminfo
MemTotal:        1000 kB
MemFree:          100 kB
MemAvailable:     400 kB
SwapTotal:        200 kB
SwapFree:         150 kB
@uptime
3600.50 7000.00
@diskstats
   8       0 sda 10 0 100 0 10 0 200 0 0 0 0
   8       1 sda1 10 0 100 0 10 0 200 0 0 0 0
   7       0 loop0 10 0 999 0 10 0 999 0 0 0 0
@netdev
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets
    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0
@procs
42
@df
Filesystem     Type  1024-blocks  Used Available Capacity Mounted on
/dev/sda1      ext4          100    25        75      25% /
tmpfs          tmpfs         100   100         0     100% /run
/dev/sdb1      xfs           100    90        10      90% /srv/my data
@end
"""


def test_agentless_parse_and_rates():
    r = agentless.parse(PROC)
    assert r.gauges["cpus"] == 2 and r.gauges["load1"] == 0.5
    assert r.gauges["mem_total"] == 1024000 and r.gauges["mem_used"] == 600 * 1024
    assert r.gauges["mem_pct"] == 60.0 and r.gauges["swap_pct"] == 25.0
    assert r.gauges["uptime"] == 3600.5 and r.gauges["procs"] == 42
    assert r.counters["disk_read"] == 100 * 512 and r.counters["disk_write"] == 200 * 512
    assert r.counters["net_rx"] == 1000 and r.counters["net_tx"] == 2000  # lo not counted
    assert set(r.detail["mounts"]) == {"/", "/srv/my data"}  # tmpfs left out
    assert r.gauges["disk_pct"] == 90.0  # the fullest mount
    t1 = datetime(2026, 1, 1, tzinfo=UTC)
    values, state = derive(r, {}, t1)
    assert "cpu" not in values
    odd = agentless.Reading({"a": 6.213499, "b": 2.0, "c": 25276514304.0, "d": 7}, {}, {})
    assert derive(odd, {}, t1)[0] == {"a": 6.213, "b": 2.0, "c": 25276514304.0, "d": 7}
    later = agentless.parse(
        PROC.replace("cpu  100 0 100 700 100", "cpu  150 0 150 750 150").replace(
            "eth0: 1000", "eth0: 4000"
        )
    )
    values, _ = derive(later, state, t1 + timedelta(seconds=30))
    assert values["cpu"] == 50.0 and values["cpu_iowait"] == 25.0
    assert values["net_rx"] == 100.0 and values["disk_read"] == 0.0
    # A reboot (counters went down) gives no rate rather than a negative one.
    values, _ = derive(r, {**state, "net_rx": 10**9, "at": state["at"] - 30}, t1)
    assert "net_rx" not in values


EXPORTER_TEXT = """# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 80
node_cpu_seconds_total{cpu="0",mode="user"} 20
node_cpu_seconds_total{cpu="1",mode="idle"} 90
node_cpu_seconds_total{cpu="1",mode="system"} 10
# TYPE node_load1 gauge
node_load1 1.5
node_memory_MemTotal_bytes 1000
node_memory_MemAvailable_bytes 250
node_memory_SwapTotal_bytes 0
node_memory_SwapFree_bytes 0
node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1000
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 400
node_filesystem_size_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1000
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 0
node_disk_read_bytes_total{device="sda"} 5000
node_disk_read_bytes_total{device="sda1"} 5000
node_network_receive_bytes_total{device="eth0"} 300
node_network_receive_bytes_total{device="lo"} 999
node_network_transmit_bytes_total{device="eth0"} 100
node_boot_time_seconds 1000
node_time_seconds 4600
"""


def test_exporter_parse():
    r = exporter.parse(EXPORTER_TEXT)
    assert r.counters["cpu_total"] == 200 and r.counters["cpu_busy"] == 30
    assert r.gauges["cpus"] == 2 and r.gauges["load1"] == 1.5
    assert r.gauges["mem_pct"] == 75.0 and r.gauges["swap_pct"] == 0.0
    assert r.gauges["disk_pct"] == 60.0 and list(r.detail["mounts"]) == ["/"]
    assert r.counters["disk_read"] == 5000 and r.counters["net_rx"] == 300
    assert r.gauges["uptime"] == 3600
