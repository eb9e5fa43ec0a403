"""VPS statistics: one ``getAllDomainStats`` call per hypervisor per round, every hypervisor
read concurrently (bounded pool, per-hypervisor timeout, so a slow or dead one delays no
other), one bulk insert of the round's samples, every new sample announced live. Raw samples
are kept 48 hours and rolled up into 5-minute buckets (min/avg/max) kept 30 days, those
into hourly ones kept a year.

Scheduled in vps/apps.py (``collect`` every minute, ``roll_up`` every 5 minutes, ``prune``
hourly); see docs/vps.md, "Statistics".
"""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Max, Min
from django.utils import timezone

from core import bulk, events
from monitoring import series as monitoring_series
from vps import libvirt_adapter as lv
from vps.models import Hypervisor, HypervisorStats, Vps, VpsRollup, VpsSample

SAMPLE_TOPIC = "vps.sample"
RAW_KEEP = timedelta(hours=48)
ROLLUP_KEEP = timedelta(days=30)
STEP = VpsRollup.STEP
# A bucket is rolled up once it ended this long ago (a round's samples are all stored by then).
GRACE = timedelta(seconds=60)
WINDOW = timedelta(hours=1)  # rolled up an hour of samples at a time
ROUND_SECONDS = 60  # the schedule's interval: the raw samples' spacing
RATES = ("disk_read", "disk_write", "net_rx", "net_tx")  # bytes per second
# Rolled up, charted and sent live; mem_total and vcpus stay in the raw samples.
ROLLED = ("cpu", "mem_used", "mem_available", "mem_pct", *RATES)
# VPSes in these states have no domain worth reading.
SKIPPED_STATES = (Vps.State.PENDING, Vps.State.DELETING, Vps.State.DELETED)


@dataclass
class RoundResult:
    samples: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # hypervisor -> error
    seconds: float = 0.0


def floor(at: datetime, step: int) -> datetime:
    ts = int(at.timestamp())
    return datetime.fromtimestamp(ts - ts % step, tz=UTC)


# -- collection ---------------------------------------------------------------------------
def read_hypervisor(hv: Hypervisor) -> tuple[list[tuple[str, dict]], datetime]:
    """Runs in a worker thread: every domain's counters (one call) and when they were read."""
    try:
        with lv.connect(hv) as session:
            stats = session.domain_stats()
        return stats, timezone.now()
    finally:
        connections.close_all()  # this thread's own connections


def counters_of(stats: dict) -> dict:
    """The cumulative counters of one domain's ``getAllDomainStats`` entry, summed over its
    disks and interfaces."""
    out: dict = {}
    if "cpu.time" in stats:
        out["cpu_time"] = int(stats["cpu.time"])
    for prefix, count_key, pairs in (
        ("block", "block.count", (("rd.bytes", "disk_read"), ("wr.bytes", "disk_write"))),
        ("net", "net.count", (("rx.bytes", "net_rx"), ("tx.bytes", "net_tx"))),
    ):
        for i in range(int(stats.get(count_key, 0) or 0)):
            for suffix, name in pairs:
                value = stats.get(f"{prefix}.{i}.{suffix}")
                if value is not None:
                    out[name] = out.get(name, 0) + int(value)
    return out


def derive(stats: dict, previous: dict, at: datetime, vcpus: int) -> tuple[dict, dict]:
    """One sample's values (memory now; CPU % and rates from the counters' deltas since the
    previous round) and the counters to keep for the next round."""
    values: dict = {}
    vcpus = int(stats.get("vcpu.current") or vcpus or 1)
    values["vcpus"] = vcpus
    total_kib = stats.get("balloon.available") or stats.get("balloon.current")
    if total_kib:
        values["mem_total"] = int(total_kib) * 1024
        # What the guest can still use (its balloon driver reports it); without a guest
        # report, what the VM takes on the host (rss) is the figure there is.
        free_kib = stats.get("balloon.usable", stats.get("balloon.unused"))
        if free_kib is not None and stats.get("balloon.available"):
            values["mem_available"] = int(free_kib) * 1024
            values["mem_used"] = max(values["mem_total"] - values["mem_available"], 0)
        elif stats.get("balloon.rss") is not None:
            values["mem_used"] = int(stats["balloon.rss"]) * 1024
        if "mem_used" in values:
            values["mem_pct"] = round(min(values["mem_used"] / values["mem_total"] * 100, 100), 2)
    cur = counters_of(stats)
    state = {"at": at.timestamp(), **cur}
    dt = state["at"] - previous.get("at", state["at"])
    if dt > 0:
        if "cpu_time" in cur and "cpu_time" in previous:
            used = cur["cpu_time"] - previous["cpu_time"]
            if used >= 0:  # not after a restart of the domain
                values["cpu"] = round(min(used / (dt * 1e9 * vcpus) * 100, 100.0), 2)
        for name in RATES:
            if name in cur and name in previous and cur[name] >= previous[name]:
                values[name] = round((cur[name] - previous[name]) / dt, 1)
    return values, state


def collect_round(hypervisors: list[Hypervisor] | None = None) -> RoundResult:
    started = time.monotonic()
    timeout = settings.PANEL_MONITORING_TIMEOUT
    if hypervisors is None:
        hypervisors = list(Hypervisor.objects.filter(enabled=True).select_related("server"))
    result = RoundResult()
    if not hypervisors:
        return result
    HypervisorStats.objects.bulk_create(
        [HypervisorStats(hypervisor=hv) for hv in hypervisors], ignore_conflicts=True
    )
    workers = max(1, min(settings.PANEL_MONITORING_WORKERS, len(hypervisors)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vps-stats")
    futures = {pool.submit(read_hypervisor, hv): hv for hv in hypervisors}
    # Each hypervisor gets its timeout once a worker takes it; the round ends by then, and
    # a hung connection keeps only its own thread (cancelled futures never start).
    waves = -(-len(hypervisors) // workers)
    done, _pending = wait(futures, timeout=waves * timeout)
    pool.shutdown(wait=False, cancel_futures=True)
    readings: dict[int, tuple] = {}
    for future, hv in futures.items():
        if future not in done:
            result.failed[str(hv)] = f"no answer within {timeout}s"
            continue
        try:
            readings[hv.pk] = future.result()
        except lv.HypervisorError as exc:
            result.failed[str(hv)] = str(exc) or exc.__class__.__name__
    _store(hypervisors, readings, result)
    result.seconds = time.monotonic() - started
    return result


def _store(hypervisors: list[Hypervisor], readings: dict[int, tuple], result) -> None:
    found = HypervisorStats.objects.filter(hypervisor__in=hypervisors)
    states = {s.hypervisor_id: s for s in found}
    vpses = defaultdict(dict)
    rows = (
        Vps.objects.filter(hypervisor__in=list(readings))
        .exclude(state__in=SKIPPED_STATES)
        .select_related("owner")
    )
    for vps in rows:
        vpses[vps.hypervisor_id][vps.domain_name] = vps
    samples, live = [], []
    for hv in hypervisors:
        state = states[hv.pk]
        if hv.pk not in readings:
            state.failures += 1
            state.last_error = result.failed.get(str(hv), "")[:1000]
            continue
        stats, at = readings[hv.pk]
        counters = {}
        for name, values in stats:
            vps = vpses[hv.pk].get(name)
            if vps is None or "cpu.time" not in values:  # not ours, or not running
                continue
            sample, counters[name] = derive(values, state.counters.get(name, {}), at, vps.vcpus)
            samples.append((vps.pk, at, sample))
            data = {"at": at.timestamp(), "values": {k: sample[k] for k in ROLLED if k in sample}}
            live.append((vps.uuid.hex, vps.owner, data))
        state.counters, state.last_round_at = counters, at
        state.failures, state.last_error = 0, ""
    fields = ("counters", "last_round_at", "failures", "last_error")
    with transaction.atomic():
        bulk.insert_rows(VpsSample, ("vps", "at", "values"), samples)
        bulk.update_rows(
            HypervisorStats,
            "hypervisor",
            fields,
            [[getattr(s, f) for f in fields] + [s.hypervisor_id] for s in states.values()],
        )
        events.changed_many(SAMPLE_TOPIC, live)
    result.samples = len(samples)


# -- rollups and retention ----------------------------------------------------------------
FIVE_MINUTES, HOUR = VpsRollup.FIVE_MINUTES, VpsRollup.HOUR
KEEP = {FIVE_MINUTES: ROLLUP_KEEP, HOUR: timedelta(days=365)}
# How much is rolled up at a time: an hour of raw samples, a day of 5-minute rollups.
WINDOWS = {FIVE_MINUTES: WINDOW, HOUR: timedelta(days=1)}


def roll_up(now: datetime | None = None) -> int:
    """Roll up every complete 5-minute bucket, then every hour whose 5-minute buckets are
    all rolled up, not rolled up yet (idempotent); returns the rows written."""
    now = now or timezone.now()
    end5 = floor(now - GRACE, STEP)
    written = _roll(FIVE_MINUTES, end5, _raw_rows)
    return written + _roll(HOUR, floor(end5, HOUR), _five_minute_rows)


def _roll(step: int, end: datetime, source) -> int:
    last = VpsRollup.objects.filter(step=step).aggregate(m=Max("start"))["m"]
    if last is not None:
        start = last + timedelta(seconds=step)
    else:
        first = source.first_time()
        if first is None:
            return 0
        start = floor(first, step)
    written = 0
    while start < end:
        stop = min(start + WINDOWS[step], end)
        acc: dict[tuple, dict] = defaultdict(dict)
        counts: dict[tuple, int] = defaultdict(int)
        for vps_id, at, count, values in source(start, stop):
            key = (vps_id, floor(at, step))
            counts[key] += count
            _add(acc[key], values, count)
        rows = [
            VpsRollup(
                vps_id=vps_id, step=step, start=at, count=counts[(vps_id, at)], values=_triples(m)
            )
            for (vps_id, at), m in acc.items()
        ]
        VpsRollup.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
        written += len(rows)
        start = stop
    return written


def _raw_rows(start: datetime, stop: datetime):
    samples = VpsSample.objects.filter(at__gte=start, at__lt=stop).order_by()
    for vps_id, at, values in samples.values_list("vps_id", "at", "values").iterator(2000):
        yield vps_id, at, 1, values


_raw_rows.first_time = lambda: VpsSample.objects.aggregate(m=Min("at"))["m"]


def _five_minute_rows(start: datetime, stop: datetime):
    rows = VpsRollup.objects.filter(step=FIVE_MINUTES, start__gte=start, start__lt=stop)
    yield from rows.order_by().values_list("vps_id", "start", "count", "values").iterator(2000)


_five_minute_rows.first_time = lambda: VpsRollup.objects.filter(step=FIVE_MINUTES).aggregate(
    m=Min("start")
)["m"]


def prune(now: datetime | None = None) -> dict[str, int]:
    """Delete raw samples and rollups past their retention (one DELETE each)."""
    now = now or timezone.now()
    deleted = {"raw": VpsSample.objects.filter(at__lt=now - RAW_KEEP).delete()[0]}
    for step, name in ((FIVE_MINUTES, "5m"), (HOUR, "1h")):
        old = VpsRollup.objects.filter(step=step, start__lt=now - KEEP[step])
        deleted[name] = old.delete()[0]
    return deleted


def _add(bucket: dict, values: dict, count: int) -> None:
    """Add a sample (plain numbers) or a rollup row ([min, avg, max], ``count`` samples) to
    ``bucket``: metric -> [min, sum, max, n]."""
    for name in ROLLED:
        v = values.get(name)
        if v is None or isinstance(v, bool):
            continue
        lo, avg, hi = v if isinstance(v, list) else (v, v, v)
        agg = bucket.get(name)
        if agg is None:
            bucket[name] = [lo, avg * count, hi, count]
        else:
            agg[0], agg[2] = min(agg[0], lo), max(agg[2], hi)
            agg[1] += avg * count
            agg[3] += count


def _triples(bucket: dict) -> dict:
    return {k: [lo, round(total / n, 3), hi] for k, (lo, total, hi, n) in bucket.items()}


# -- series (the API and the chart) --------------------------------------------------------
# range -> (span, source step: 0 = raw samples, default step), as monitoring's servers:
# 1h from the raw samples, 24h and 7d from the 5-minute rollups, 30d and 1y from the hourly
# ones; each ends with the raw samples its rollups have not reached yet, so a chart always
# ends at the last round (monitoring.series.build_series).
RANGES = {
    "1h": (timedelta(hours=1), 0, ROUND_SECONDS),
    "24h": (timedelta(hours=24), FIVE_MINUTES, FIVE_MINUTES),
    "7d": (timedelta(days=7), FIVE_MINUTES, HOUR),
    "30d": (ROLLUP_KEEP, HOUR, HOUR),
    "1y": (KEEP[HOUR], HOUR, 86400),
}
SeriesError = monitoring_series.SeriesError


def series(vps: Vps, range_name: str = "1h", now: datetime | None = None) -> dict:
    """``{"range", "step", "start", "end", "t": [unix s], "metrics": {m: {"min", "avg",
    "max"}}}``, ``None`` where a point lacks a metric."""
    found = monitoring_series.build_series(
        range_name,
        RANGES,
        list(ROLLED),
        rollups=lambda step, start, end: VpsRollup.objects.filter(
            vps=vps, step=step, start__gte=start, start__lte=end
        ).order_by("start"),
        samples=lambda start, end: VpsSample.objects.filter(
            vps=vps, at__gte=start, at__lte=end
        ).order_by("at"),
        now=now,
        raw_step=ROUND_SECONDS,
    )
    return {
        "range": found.range,
        "step": found.step,
        "start": found.start,
        "end": found.end,
        "t": found.t,
        "metrics": found.metrics,
    }


# -- scheduled entry points (vps/apps.py) --------------------------------------------------
def collect() -> str:
    result = collect_round()
    return f"{result.samples} samples, {len(result.failed)} failed, {result.seconds:.1f}s"


def roll_up_job() -> str:
    return f"rollups written: {roll_up()}"


def prune_job() -> str:
    return f"deleted: {prune()}"
