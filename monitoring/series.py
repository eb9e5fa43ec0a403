"""Series for charts and the API: a range picks its source (raw samples or a rollup), the
points are bucketed to the step asked for, and the newest stretch that the rollup job has
not reached yet is filled from the raw samples, so a chart always ends at the last round."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from monitoring.models import Rollup, Sample
from monitoring.storage import ROLLED, floor

# range -> (span, source step: 0 = raw samples, default step)
RANGES = {
    "1h": (timedelta(hours=1), 0, 30),
    "24h": (timedelta(hours=24), Rollup.FIVE_MINUTES, 300),
    "7d": (timedelta(days=7), Rollup.FIVE_MINUTES, 1800),
    "30d": (timedelta(days=30), Rollup.HOUR, 3600),
    "1y": (timedelta(days=365), Rollup.HOUR, 86400),
}
METRICS = (*ROLLED, "uptime")  # uptime: the 1h range only (raw samples)
MAX_POINTS = 10000


class SeriesError(ValueError):
    pass


@dataclass
class Series:
    range: str
    step: int
    start: datetime
    end: datetime
    source: str
    t: list[int]
    metrics: dict[str, dict[str, list]]


def series(
    server,
    range_name: str = "1h",
    metrics: list[str] | None = None,
    step: int | None = None,
    now: datetime | None = None,
) -> Series:
    if range_name not in RANGES:
        raise SeriesError(f"range must be one of {', '.join(RANGES)}")
    span, source_step, default_step = RANGES[range_name]
    metrics = list(metrics or ("cpu", "mem_pct", "disk_pct", "load1", "net_rx", "net_tx"))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SeriesError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
    step = step or default_step
    base = source_step or 30
    if step < base or step % base:
        raise SeriesError(f"step must be a multiple of {base} seconds for range {range_name}")
    if span.total_seconds() / step > MAX_POINTS:
        raise SeriesError(f"at most {MAX_POINTS} points: use a larger step")
    now = now or timezone.now()
    start = floor(now - span, step)
    buckets: dict[datetime, dict[str, list[float]]] = defaultdict(dict)  # t -> m -> [lo,sum,hi,n]
    # Rollup rows already at the step asked for (30 days of hourly rollups, the common
    # chart) are points as they are: no re-bucketing, each metric's lists built at once.
    direct: list[tuple[datetime, dict]] = []
    raw_from = start
    if source_step:
        rows = Rollup.objects.filter(
            server=server, step=source_step, start__gte=start, start__lte=now
        ).order_by("start")
        last = None
        for at, count, values in rows.values_list("start", "count", "values"):
            last = at
            if step == source_step:
                direct.append((at, values))
            else:
                _add(buckets, floor(at, step), values, metrics, count)
        if last is not None:
            raw_from = last + timedelta(seconds=source_step)
    samples = Sample.objects.filter(server=server, at__gte=raw_from, at__lte=now).order_by("at")
    for at, values in samples.values_list("at", "values"):
        _add(buckets, floor(at, step), {k: [v, v, v] for k, v in values.items()}, metrics, 1)
    times = sorted(buckets)
    out = {}
    for m in metrics:
        got = [_triple(values.get(m)) for _at, values in direct]
        lows = [g[0] if g else None for g in got]
        avgs = [round(g[1], 4) if g else None for g in got]
        highs = [g[2] if g else None for g in got]
        for t in times:
            agg = buckets[t].get(m)
            lows.append(agg[0] if agg else None)
            avgs.append(round(agg[1] / agg[3], 4) if agg else None)
            highs.append(agg[2] if agg else None)
        out[m] = {"min": lows, "avg": avgs, "max": highs}
    times = [at for at, _values in direct] + times
    return Series(
        range=range_name,
        step=step,
        start=start,
        end=now,
        source="raw" if not source_step else f"{source_step}s",
        t=[int(t.timestamp()) for t in times],
        metrics=out,
    )


def _triple(v) -> tuple | None:
    if v is None or isinstance(v, bool):
        return None
    return tuple(v) if isinstance(v, list) else (v, v, v)


def _add(buckets, t, values: dict, metrics: list[str], count: int) -> None:
    bucket = buckets[t]
    for m in metrics:
        v = values.get(m)
        if v is None or isinstance(v, bool):
            continue
        lo, avg, hi = v if isinstance(v, list) else (v, v, v)
        agg = bucket.get(m)
        if agg is None:
            bucket[m] = [lo, avg * count, hi, count]
        else:
            agg[0], agg[2] = min(agg[0], lo), max(agg[2], hi)
            agg[1] += avg * count
            agg[3] += count
