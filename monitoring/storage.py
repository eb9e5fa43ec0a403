"""Bounded storage: raw samples for 48 hours, 5-minute rollups for 30 days, hourly rollups
for a year. ``roll_up`` turns complete buckets into rollups (min/avg/max per metric, exact:
hourly rows are built from the 5-minute rows, averages weighted by sample count) and is
idempotent; ``prune`` deletes what is past its retention. Both work in Python over plain
ORM reads and bulk inserts, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db.models import Max, Min
from django.utils import timezone

from monitoring.models import Rollup, Sample

RAW_KEEP = timedelta(hours=48)
KEEP = {Rollup.FIVE_MINUTES: timedelta(days=30), Rollup.HOUR: timedelta(days=365)}
# A bucket is rolled up once it ended this long ago (a round's samples are all stored by then).
GRACE = timedelta(seconds=60)
# The metrics rolled up (and charted): totals and counters that hardly move (mem_total,
# cpus, uptime ...) stay in the raw samples only.
ROLLED = (
    "cpu",
    "cpu_iowait",
    "load1",
    "load5",
    "load15",
    "mem_pct",
    "mem_used",
    "swap_pct",
    "disk_pct",
    "disk_used",
    "disk_read",
    "disk_write",
    "net_rx",
    "net_tx",
    "procs",
)
WINDOW = {Rollup.FIVE_MINUTES: timedelta(hours=1), Rollup.HOUR: timedelta(days=1)}


def floor(at: datetime, step: int) -> datetime:
    ts = int(at.timestamp())
    return datetime.fromtimestamp(ts - ts % step, tz=UTC)


def roll_up(now: datetime | None = None) -> dict[int, int]:
    """Roll up every complete bucket not rolled up yet; returns rows written per step."""
    now = now or timezone.now()
    written = {Rollup.FIVE_MINUTES: 0, Rollup.HOUR: 0}
    end5 = floor(now - GRACE, Rollup.FIVE_MINUTES)
    written[Rollup.FIVE_MINUTES] = _roll(Rollup.FIVE_MINUTES, end5, _raw_rows)
    end_hour = floor(end5, Rollup.HOUR)  # every 5-minute bucket of these hours is rolled up
    written[Rollup.HOUR] = _roll(Rollup.HOUR, end_hour, _five_minute_rows)
    return written


def _roll(step: int, end: datetime, source) -> int:
    last = Rollup.objects.filter(step=step).aggregate(m=Max("start"))["m"]
    if last is not None:
        start = last + timedelta(seconds=step)
    else:
        first = source.first_time()
        if first is None:
            return 0
        start = floor(first, step)
    written = 0
    while start < end:
        stop = min(start + WINDOW[step], end)
        rows = _buckets(source(start, stop), step)
        Rollup.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
        written += len(rows)
        start = stop
    return written


def _raw_rows(start: datetime, stop: datetime):
    """(server, time, samples, {metric: (min, sum, max, samples)}) from raw samples."""
    qs = Sample.objects.filter(at__gte=start, at__lt=stop).order_by()
    for server_id, at, values in qs.values_list("server_id", "at", "values").iterator(2000):
        metrics = {k: (v, v, v, 1) for k, v in values.items() if k in ROLLED and _number(v)}
        yield server_id, at, 1, metrics


_raw_rows.first_time = lambda: Sample.objects.aggregate(m=Min("at"))["m"]


def _five_minute_rows(start: datetime, stop: datetime):
    qs = Rollup.objects.filter(step=Rollup.FIVE_MINUTES, start__gte=start, start__lt=stop)
    for server_id, at, count, values in qs.order_by().values_list(
        "server_id", "start", "count", "values"
    ):
        metrics = {k: (v[0], v[1] * count, v[2], count) for k, v in values.items()}
        yield server_id, at, count, metrics


_five_minute_rows.first_time = lambda: Rollup.objects.filter(step=Rollup.FIVE_MINUTES).aggregate(
    m=Min("start")
)["m"]


def _buckets(rows, step: int) -> list[Rollup]:
    acc: dict[tuple, dict] = defaultdict(dict)
    counts: dict[tuple, int] = defaultdict(int)
    for server_id, at, count, metrics in rows:
        key = (server_id, floor(at, step))
        counts[key] += count
        bucket = acc[key]
        for name, (lo, total, hi, n) in metrics.items():
            old = bucket.get(name)
            if old is None:
                bucket[name] = [lo, total, hi, n]
            else:
                old[0] = min(old[0], lo)
                old[1] += total
                old[2] = max(old[2], hi)
                old[3] += n
    return [
        Rollup(
            server_id=server_id,
            step=step,
            start=start,
            count=counts[(server_id, start)],
            values={k: [lo, round(total / n, 3), hi] for k, (lo, total, hi, n) in m.items()},
        )
        for (server_id, start), m in acc.items()
    ]


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def prune(now: datetime | None = None) -> dict[str, int]:
    """Delete raw samples and rollups past their retention (one DELETE each)."""
    now = now or timezone.now()
    deleted = {"raw": Sample.objects.filter(at__lt=now - RAW_KEEP).delete()[0]}
    for step, keep in KEEP.items():
        deleted[f"{step}s"] = Rollup.objects.filter(step=step, start__lt=now - keep).delete()[0]
    return deleted
