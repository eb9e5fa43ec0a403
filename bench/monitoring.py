"""Benchmark monitoring: ingest rounds for many servers, roll up, prune, measure the database
bytes per server-year, serve a 30-day chart, and poll servers over real SSH at once.

Readings are this machine's real /proc (read once through the agentless script) stored for
every server, round after round, exactly as the collector stores them (one bulk insert per
round). The last line is one JSON object:
{"servers": N, "samples_per_s": ..., "samples_per_s_vs_orm": ..., "samples_per_cpu_s": ...,
 "samples_per_cpu_s_with_db": ..., "rollup_s": ..., "poll_200_s": ...,
 "bytes_per_server_year": ..., "chart_30d_ms": ..., "chart_30d_series_ms": ...}
chart_30d_ms is the API request the server page makes for a 30-day chart, served whole.

    .venv/bin/python bench/monitoring.py                      # SQLite under var/bench-monitoring/
    DATABASE_URL=postgres://... .venv/bin/python bench/monitoring.py
    .venv/bin/python bench/monitoring.py --servers 100 --rounds 10 --poll 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
os.environ.setdefault("PANEL_VAR_DIR", str(ROOT / "var" / "bench-monitoring"))
os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdefghij")
os.environ.setdefault("PANEL_ENCRYPTION_KEYS", "8rK3bTz3W0Hk1pVx0fYb3cFvHqYp9yq0Zl5H6mB2T3Q=")
os.environ.setdefault("PANEL_AUDIT_KEYS", "bench-audit-key-not-for-production-5f2b9c1e7a4d")
os.environ["PANEL_DEBUG"] = "0"
os.environ["PANEL_SECURE"] = "0"
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

# Rows one server keeps at steady state: 48 h of 30 s samples, 30 days of 5-minute rollups,
# a year of hourly rollups.
RAW_ROWS, FIVE_MIN_ROWS, HOUR_ROWS = 48 * 120, 30 * 288, 365 * 24


def table_bytes(table: str) -> int:
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT pg_total_relation_size(%s)", [table])
            return cur.fetchone()[0]
        try:
            cur.execute(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name = %s)",
                [table],
            )
            return cur.fetchone()[0] or 0
        except Exception:  # noqa: BLE001 - SQLite without dbstat: whole-file size
            cur.execute("PRAGMA page_count")
            pages = cur.fetchone()[0]
            cur.execute("PRAGMA page_size")
            return pages * cur.fetchone()[0]


def reset() -> None:
    from core.models import LiveEvent
    from monitoring.models import Rollup, Sample, ServerMonitor
    from servers.models import Server

    Sample.objects.all().delete()
    Rollup.objects.all().delete()
    ServerMonitor.objects.all().delete()
    Server.objects.filter(name__startswith="bench-").delete()
    LiveEvent.objects.filter(topic="monitoring.sample").delete()
    if connection.vendor == "postgresql":
        # Dead rows of earlier runs would count in the sizes and slow every write (a run
        # leaves more than autovacuum clears on a busy machine).
        with connection.cursor() as cur:
            for model in (Sample, Rollup, ServerMonitor, Server, LiveEvent):
                table = connection.ops.quote_name(model._meta.db_table)
                cur.execute(f"VACUUM FULL ANALYZE {table}")


def make_servers(count: int, owner, **fields):
    from servers.models import Server

    Server.objects.bulk_create(
        [
            Server(name=f"bench-{i:05d}", address="127.0.0.2", owner=owner, **fields)
            for i in range(count)
        ]
    )
    return list(Server.objects.filter(name__startswith="bench-").select_related("owner"))


def backend_cpu() -> float | None:
    """CPU seconds used so far by this connection's PostgreSQL backend, when the server
    runs on this machine (its /proc entry readable); None otherwise."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def ingest(servers, rounds: int, start) -> tuple[float, float, float | None]:
    """Store ``rounds`` rounds for every server as the collector does: samples per second of
    wall time, per second of this process's CPU (what a busy machine does not change), and
    on a local PostgreSQL per second of this process's and its backend's CPU together (the
    round trips are sequential, so on an idle machine that is about the wall-clock rate)."""
    from monitoring import agentless, collector
    from servers.transport import LocalTransport

    reading = agentless.collect(LocalTransport(), 30)  # this machine's real figures
    collector._ensure_monitors(servers)
    elapsed = cpu = 0.0
    db_cpu = backend_cpu()
    for r in range(rounds):
        at = start + timedelta(seconds=30 * r)
        readings = {}
        for s in servers:
            counters = {k: v + r * 1000 for k, v in reading.counters.items()}
            readings[s.pk] = (
                agentless.Reading(dict(reading.gauges), counters, reading.detail),
                at,
            )
        began, began_cpu = time.perf_counter(), time.process_time()
        collector._store(servers, readings, {}, collector.RoundResult())
        elapsed += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
    samples = len(servers) * rounds
    if db_cpu is not None:
        db_cpu = backend_cpu() - db_cpu  # the readings built between rounds cost it nothing
        return samples / elapsed, samples / cpu, samples / (cpu + db_cpu)
    return samples / elapsed, samples / cpu, None


def ingest_orm_baseline(servers, rounds: int, start) -> float:
    """The same rounds written the way the collector did before core.bulk (model instances,
    bulk_create, an upsert of the monitors, LiveEvent bulk_create): the baseline measured
    in the same run, so the ratio holds whatever else the machine is doing."""
    from core.models import LiveEvent
    from monitoring import agentless, collector
    from monitoring.models import Sample, ServerMonitor

    reading = agentless.collect(LocalTransportFor(), 30)
    collector._ensure_monitors(servers)
    elapsed = 0.0
    for r in range(rounds):
        at = start + timedelta(seconds=30 * r)
        began = time.perf_counter()
        samples, events = [], []
        for s in servers:
            counters = {k: v + r * 1000 for k, v in reading.counters.items()}
            one = agentless.Reading(dict(reading.gauges), counters, reading.detail)
            values, state = collector.derive(one, s.monitor.counters or {}, at)
            samples.append(Sample(server=s, at=at, values=values, detail=one.detail))
            s.monitor.counters, s.monitor.latest, s.monitor.last_sample_at = state, values, at
            events.append(
                LiveEvent(topic="monitoring.sample", key=s.uuid.hex, owner_id=s.owner_id, data={})
            )
        Sample.objects.bulk_create(samples)
        ServerMonitor.objects.bulk_create(
            [s.monitor for s in servers],
            batch_size=500,
            update_conflicts=True,
            unique_fields=["server"],
            update_fields=["failures", "state", "last_sample_at", "last_error"],
        )
        LiveEvent.objects.bulk_create(events)
        elapsed += time.perf_counter() - began
    return len(servers) * rounds / elapsed


def LocalTransportFor():  # noqa: N802 - a constructor
    from servers.transport import LocalTransport

    return LocalTransport()


def poll(count: int, owner) -> float | None:
    """One collection round over real SSH to ``count`` servers (one private sshd)."""
    from monitoring.collector import collect_round
    from servers.models import Server
    from tests.integration.conftest import free_port, start_sshd, stop_pidfile, wait_port

    if not shutil.which("sshd") and not os.path.exists("/usr/sbin/sshd"):
        return None
    base = Path(tempfile.mkdtemp(prefix="uhp-bench-sshd-"))
    base.chmod(0o755)
    port = free_port("127.0.0.2")
    daemon = start_sshd(base, "127.0.0.2", port)
    try:
        wait_port("127.0.0.2", port)
        reset()
        servers = make_servers(
            count, owner, ssh_port=port, private_key=daemon.private_key, transport="ssh"
        )
        Server.objects.filter(pk__in=[s.pk for s in servers]).update(
            host_key=daemon.host_key_line()
        )
        servers = list(Server.objects.filter(name__startswith="bench-").select_related("owner"))
        collect_round(servers)  # connect (pooled), as a running collector already has
        servers = list(
            Server.objects.filter(name__startswith="bench-").select_related("owner", "monitor")
        )
        result = collect_round(servers)
        if result.failed:
            print(f"poll: {len(result.failed)} failed, e.g. {next(iter(result.failed.values()))}")
        return result.seconds
    finally:
        stop_pidfile(base / "sshd.pid")
        shutil.rmtree(base, ignore_errors=True)


CHART_METRICS = ("cpu", "mem_pct", "disk_pct", "net_rx", "net_tx")  # static/js/metrics.js


def chart(one, owner) -> tuple[float, float]:
    """A 30-day chart of one server with a month of hourly rollups and this hour's raw
    samples (not rolled up yet): the median time of the API request the server page makes
    (session, policy, series, JSON), and of the series alone for every metric."""
    from monitoring import agentless, series, storage
    from monitoring.models import Rollup, Sample
    from servers.transport import LocalTransport
    from tests.conftest import login

    now = timezone.now()
    hour = storage.floor(now, 3600)
    Rollup.objects.bulk_create(
        [
            Rollup(
                server=one,
                step=3600,
                start=hour - timedelta(hours=h),
                count=120,
                values={m: [1.0 + h % 7, 2.125 + h % 5, 3.5 + h] for m in storage.ROLLED},
            )
            for h in range(1, 24 * 30 + 1)
        ]
    )
    reading = agentless.collect(LocalTransport(), 30)
    Sample.objects.bulk_create(
        [
            Sample(server=one, at=at, values=reading.gauges, detail=reading.detail)
            for at in (hour + timedelta(seconds=30 * i) for i in range(120))
            if at <= now
        ]
    )
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = login(owner)
    url = f"/api/v1/metrics/{one.uuid}/?range=30d&metrics={','.join(CHART_METRICS)}"

    def served():
        response = client.get(url, HTTP_ACCEPT="application/json")
        assert response.status_code == 200 and len(response.json()["t"]) >= 720, response

    def whole():
        assert len(series.series(one, "30d", list(series.METRICS)).t) >= 720

    return median_ms(served), median_ms(whole)


def median_ms(func, times: int = 9) -> float:
    func()  # warm: connection, caches
    took = []
    for _ in range(times):
        began = time.perf_counter()
        func()
        took.append((time.perf_counter() - began) * 1000)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--poll", type=int, default=200, help="servers polled over SSH (0: skip)")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    from accounts.models import Role, User
    from monitoring import series, storage
    from monitoring.models import Rollup, Sample

    owner = User.objects.filter(email="bench-monitoring@example.com").first()
    owner = owner or User.objects.create_user(
        "bench-monitoring@example.com", "x" * 20, role=Role.ADMIN
    )
    reset()
    servers = make_servers(args.servers, owner)
    start = storage.floor(timezone.now() - timedelta(hours=2), 3600)
    baseline = ingest_orm_baseline(servers, max(2, args.rounds // 4), start - timedelta(hours=1))
    reset()
    servers = make_servers(args.servers, owner)
    samples_per_s, per_cpu_s, per_both_cpu_s = ingest(servers, args.rounds, start)
    print(
        f"ingest: {args.servers} servers x {args.rounds} rounds, {samples_per_s:,.0f} samples/s "
        f"({samples_per_s / baseline:.1f}x the ORM baseline's {baseline:,.0f} in this run); "
        f"{per_cpu_s:,.0f} per second of this process's CPU"
        + (
            f", {per_both_cpu_s:,.0f} per second of its and PostgreSQL's CPU"
            if per_both_cpu_s
            else ""
        )
    )

    sample_bytes = table_bytes("monitoring_sample") / Sample.objects.count()
    began = time.perf_counter()
    written = storage.roll_up(start + timedelta(seconds=30 * args.rounds + 3600 + 120))
    rollup_s = time.perf_counter() - began
    print(f"rollup: {written} in {rollup_s:.2f}s")
    rollup_bytes = table_bytes("monitoring_rollup") / max(1, Rollup.objects.count())
    per_year = sample_bytes * RAW_ROWS + rollup_bytes * (FIVE_MIN_ROWS + HOUR_ROWS)
    print(
        f"bytes: {sample_bytes:.0f} per sample, {rollup_bytes:.0f} per rollup row, "
        f"{per_year / 1e6:.1f} MB per server at steady state (a year of history)"
    )
    began = time.perf_counter()
    storage.prune(timezone.now() + timedelta(days=400))
    print(f"prune: everything past retention in {time.perf_counter() - began:.2f}s")

    chart_ms, series_ms = chart(servers[0], owner)
    print(
        f"chart: 30 days served ({len(CHART_METRICS)} metrics, as the server page asks) in "
        f"{chart_ms:.1f} ms; the series alone, all {len(series.METRICS)} metrics: "
        f"{series_ms:.1f} ms"
    )

    settings.PANEL_MONITORING_TIMEOUT = 10
    poll_s = poll(args.poll, owner) if args.poll else None
    if poll_s is not None:
        print(f"poll: {args.poll} servers over SSH in one round: {poll_s:.2f}s")
    reset()
    print(
        json.dumps(
            {
                "servers": args.servers,
                "samples_per_s": round(samples_per_s),
                "samples_per_s_vs_orm": round(samples_per_s / baseline, 2),
                "samples_per_cpu_s": round(per_cpu_s),
                "samples_per_cpu_s_with_db": round(per_both_cpu_s) if per_both_cpu_s else None,
                "rollup_s": round(rollup_s, 3),
                "poll_200_s": round(poll_s, 2) if poll_s is not None else None,
                "bytes_per_server_year": round(per_year),
                "chart_30d_ms": round(chart_ms, 1),
                "chart_30d_series_ms": round(series_ms, 1),
                "database": connection.vendor,
            }
        )
    )


if __name__ == "__main__":
    main()
