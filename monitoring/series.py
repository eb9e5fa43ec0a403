"""Series for charts and the API: a range picks its source (raw samples or a rollup), the
points are bucketed to the step asked for, and the newest stretch that the rollup job has
not reached yet is filled from the raw samples, so a chart always ends at the last round."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.db.models import TextField
from django.db.models.functions import Cast
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
    direct_t: list[datetime] = []
    direct = {m: ([], [], []) for m in metrics}
    raw_from = start
    if source_step:
        rows = Rollup.objects.filter(
            server=server, step=source_step, start__gte=start, start__lte=now
        ).order_by("start")
        last = None
        for at, count, values in _with_values(rows, "start", "count"):
            last = at
            if step == source_step:
                direct_t.append(at)
                for m, (lows, avgs, highs) in direct.items():
                    got = values.get(m)
                    if type(got) is not list:  # rollups hold [min, avg, max]; else as raw
                        got = _triple(got) or (None, None, None)
                    lows.append(got[0])
                    avgs.append(None if got[1] is None else round(got[1], 4))
                    highs.append(got[2])
            else:
                _add(buckets, floor(at, step), values, metrics, count)
        if last is not None:
            raw_from = last + timedelta(seconds=source_step)
    samples = Sample.objects.filter(server=server, at__gte=raw_from, at__lte=now).order_by("at")
    for at, values in _with_values(samples, "at"):
        _add(buckets, floor(at, step), {k: [v, v, v] for k, v in values.items()}, metrics, 1)
    times = sorted(buckets)
    out = {}
    for m in metrics:
        lows, avgs, highs = direct[m]
        for t in times:
            agg = buckets[t].get(m)
            lows.append(agg[0] if agg else None)
            avgs.append(round(agg[1] / agg[3], 4) if agg else None)
            highs.append(agg[2] if agg else None)
        out[m] = {"min": lows, "avg": avgs, "max": highs}
    times = direct_t + times
    return Series(
        range=range_name,
        step=step,
        start=start,
        end=now,
        source="raw" if not source_step else f"{source_step}s",
        t=[int(t.timestamp()) for t in times],
        metrics=out,
    )


def _with_values(qs, *fields: str):
    """``fields`` then the decoded ``values`` of each row. The JSON is read as text and
    decoded with orjson: decoding a month of rollups with ``json.loads`` was most of a
    30-day chart's time."""
    rows = qs.annotate(values_text=Cast("values", TextField()))
    for *head, text in rows.values_list(*fields, "values_text"):
        yield *head, orjson.loads(text) if text is not None else {}


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


def build_series(
    range_name: str,
    ranges: dict[str, tuple[timedelta, int, int]],
    metrics: list[str],
    rollups,
    samples,
    *,
    step: int | None = None,
    now: datetime | None = None,
    raw_step: int = 30,
) -> Series:
    """``series`` for any owner of samples and rollups (the VPS statistics use it).
    ``ranges`` maps a range to (span, source step: 0 = raw samples, default step);
    ``rollups(source_step, start, end)`` gives rows with ``start``, ``count`` and ``values``
    ({metric: [min, avg, max]}), ``samples(start, end)`` rows with ``at`` and ``values``
    ({metric: number}); ``raw_step`` is the raw samples' spacing. The rollups are bucketed
    to the step, and the raw samples after the last rollup end the series."""
    if range_name not in ranges:
        raise SeriesError(f"range must be one of {', '.join(ranges)}")
    span, source_step, default_step = ranges[range_name]
    step = step or default_step
    base = source_step or raw_step
    if step < base or step % base:
        raise SeriesError(f"step must be a multiple of {base} seconds for range {range_name}")
    if span.total_seconds() / step > MAX_POINTS:
        raise SeriesError(f"at most {MAX_POINTS} points: use a larger step")
    now = now or timezone.now()
    start = floor(now - span, step)
    buckets: dict[datetime, dict[str, list[float]]] = defaultdict(dict)
    raw_from = start
    if source_step:
        last = None
        for at, count, values in _with_values(rollups(source_step, start, now), "start", "count"):
            last = at
            _add(buckets, floor(at, step), values, metrics, count)
        if last is not None:
            raw_from = last + timedelta(seconds=source_step)
    for at, values in _with_values(samples(raw_from, now), "at"):
        _add(buckets, floor(at, step), values, metrics, 1)
    times = sorted(buckets)
    out = {}
    for m in metrics:
        got = [buckets[t].get(m) for t in times]
        out[m] = {
            "min": [g[0] if g else None for g in got],
            "avg": [round(g[1] / g[3], 4) if g else None for g in got],
            "max": [g[2] if g else None for g in got],
        }
    return Series(
        range=range_name,
        step=step,
        start=start,
        end=now,
        source="raw" if not source_step else f"{source_step}s",
        t=[int(t.timestamp()) for t in times],
        metrics=out,
    )
