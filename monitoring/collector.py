"""One collection round: every monitored server read concurrently (bounded pool, per-server
timeout), one bulk insert of the samples, statuses updated, every sample announced live.

A dead server costs its own worker slot for at most the timeout and delays no other: the
round waits for every reading up to one deadline and counts what is missing as failed.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from core import bulk, events
from monitoring import agentless, exporter, maintenance
from monitoring.models import Sample, ServerMonitor
from servers.connection import open_transport
from servers.models import Server
from servers.transport import TransportError

SAMPLE_TOPIC = "monitoring.sample"
RATES = ("disk_read", "disk_write", "net_rx", "net_tx")  # bytes per second
# What a live event carries (the cards and charts need no more).
LIVE_KEYS = ("cpu", "load1", "mem_pct", "swap_pct", "disk_pct", "net_rx", "net_tx", "uptime")


@dataclass
class RoundResult:
    samples: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # server name -> error
    seconds: float = 0.0
    went_offline: list[str] = field(default_factory=list)
    came_online: list[str] = field(default_factory=list)


def read_server(server: Server, monitor: ServerMonitor, timeout: float):
    """Runs in a worker thread: returns (reading, when it was read)."""
    try:
        if monitor.method == ServerMonitor.Method.NODE_EXPORTER:
            reading = exporter.scrape(monitor.exporter_url, timeout)
        else:
            transport = open_transport(server, timeout=timeout, record_status=False)
            reading = agentless.collect(transport, timeout)
        return reading, timezone.now()
    finally:
        connections.close_all()  # this thread's own connections (open_transport writes)


def derive(reading: agentless.Reading, previous: dict, at: datetime) -> tuple[dict, dict]:
    """Values of one sample (gauges, CPU % and rates from the counters' deltas since the
    previous round) and the counters to keep for the next round."""
    # round() of a float costs ~0.5 µs (it is correctly rounded, through decimal digits):
    # whole numbers (byte counts, totals, counts) are left as they are, the same result.
    values = {k: v if v % 1 == 0 else round(v, 3) for k, v in reading.gauges.items()}
    state = {"at": at.timestamp(), **reading.counters}
    dt = state["at"] - previous.get("at", state["at"])
    if dt > 0:
        cur, old = reading.counters, previous
        total = cur.get("cpu_total", 0) - old.get("cpu_total", 0)
        busy = cur.get("cpu_busy", 0) - old.get("cpu_busy", 0)
        if "cpu_total" in cur and "cpu_total" in old and total > 0 and busy >= 0:
            values["cpu"] = round(min(busy / total * 100, 100.0), 2)
            if "cpu_iowait" in cur and "cpu_iowait" in old:
                iowait = cur["cpu_iowait"] - old["cpu_iowait"]
                values["cpu_iowait"] = round(max(iowait, 0) / total * 100, 2)
        for name in RATES:
            if name in cur and name in old and cur[name] >= old[name]:  # not after a reboot
                values[name] = round((cur[name] - old[name]) / dt, 1)
    return values, state


def collect_round(servers: list[Server] | None = None) -> RoundResult:
    started = time.monotonic()
    timeout = settings.PANEL_MONITORING_TIMEOUT
    # Windows that opened or closed since the last round decide this round's statuses.
    changed = maintenance.apply_windows()
    if servers is None:
        servers = list(Server.objects.select_related("owner", "monitor"))
    else:
        for server in servers:
            server.status = changed.get(server.pk, server.status)
    _ensure_monitors(servers)
    servers = [s for s in servers if s.monitor.enabled]
    result = RoundResult()
    if not servers:
        return result
    readings: dict[int, tuple] = {}
    errors: dict[int, str] = {}
    workers = max(1, min(settings.PANEL_MONITORING_WORKERS, len(servers)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="monitoring")
    futures = {pool.submit(read_server, s, s.monitor, timeout): s for s in servers}
    # Every server gets its own timeout once a worker takes it; the round ends by then.
    waves = -(-len(servers) // workers)
    done, _pending = wait(futures, timeout=waves * (timeout + 5))
    pool.shutdown(wait=False, cancel_futures=True)
    for future, server in futures.items():
        if future not in done:
            errors[server.pk] = f"no answer within {timeout}s"
            continue
        try:
            readings[server.pk] = future.result()
        except (TransportError, exporter.ExporterError, OSError, ValueError) as exc:
            errors[server.pk] = str(exc) or exc.__class__.__name__
    _store(servers, readings, errors, result)
    result.seconds = time.monotonic() - started
    return result


def _ensure_monitors(servers: list[Server]) -> None:
    missing = [s for s in servers if not _has_monitor(s)]
    if missing:
        ServerMonitor.objects.bulk_create(
            [ServerMonitor(server=s) for s in missing], ignore_conflicts=True
        )
        monitors = {m.server_id: m for m in ServerMonitor.objects.filter(server__in=missing)}
        for s in missing:
            s.monitor = monitors[s.pk]


def _has_monitor(server: Server) -> bool:
    try:
        return server.monitor is not None
    except ServerMonitor.DoesNotExist:
        return False


def _store(servers, readings, errors, result: RoundResult) -> None:
    offline_after = settings.PANEL_MONITORING_OFFLINE_AFTER
    samples, live, online, offline, monitors = [], [], [], [], []
    for server in servers:
        monitor, pk = server.monitor, server.pk
        if pk in readings:
            reading, at = readings[pk]
            values, state = derive(reading, monitor.counters or {}, at)
            samples.append((pk, at, values, reading.detail))
            monitor.failures, monitor.state = 0, {"counters": state, "latest": values}
            monitor.last_sample_at, monitor.last_error = at, ""
            status = server.status
            if status in (Server.Status.UNKNOWN, Server.Status.OFFLINE):
                online.append(server)
                status = Server.Status.ONLINE
            data = {k: values[k] for k in LIVE_KEYS if k in values}
            live.append((server.uuid.hex, server.owner, _live_data(at, status, data)))
        else:
            monitor.failures += 1
            monitor.last_error = errors.get(pk, "")[:1000]
            result.failed[server.name] = monitor.last_error
            if monitor.failures >= offline_after and server.status in (
                Server.Status.UNKNOWN,
                Server.Status.ONLINE,
            ):
                offline.append(server)
        monitors.append([getattr(monitor, f) for f in MONITOR_FIELDS] + [pk])
    with transaction.atomic():
        # One executemany each (model instances and per-value SQL were most of a round).
        bulk.insert_rows(Sample, ("server", "at", "values", "detail"), samples)
        bulk.update_rows(ServerMonitor, "server", MONITOR_FIELDS, monitors)
        for group, status in ((online, Server.Status.ONLINE), (offline, Server.Status.OFFLINE)):
            if group:
                # Maintenance is set by people and never overridden by a round.
                Server.objects.filter(pk__in=[s.pk for s in group]).exclude(
                    status=Server.Status.MAINTENANCE
                ).update(status=status)
                for server in group:
                    server.status = status
                # One insert for all (a fleet coming back at once was 1,000 single inserts).
                events.changed_many(
                    events.topic_of(Server),
                    [(events.key_of(s), s.owner, {}) for s in group],
                )
        events.changed_many(SAMPLE_TOPIC, live)
    result.samples = len(samples)
    result.came_online = [s.name for s in online]
    result.went_offline = [s.name for s in offline]


MONITOR_FIELDS = ("failures", "state", "last_sample_at", "last_error")


def _live_data(at: datetime, status: str, values: dict) -> dict:
    return {"at": at.timestamp(), "status": status, "values": values}
