"""Small server-rendered SVG charts: no JavaScript, nothing inline that the CSP forbids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass
class Bar:
    day: date
    ok: int
    failed: int
    x: float
    ok_y: float
    ok_h: float
    failed_y: float
    failed_h: float


def daily_bars(
    rows,
    days: int = 14,
    today: date | None = None,
    height: float = 80,
    width: float = 14,
    gap: float = 4,
) -> tuple[list[Bar], int]:
    """Stacked bars per day from (day, state, count) rows; returns the bars and the peak."""
    today = today or date.today()
    start = today - timedelta(days=days - 1)
    ok = dict.fromkeys((start + timedelta(d) for d in range(days)), 0)
    failed = dict(ok)
    for day, state, count in rows:
        if day in ok:
            if state == "failed":
                failed[day] += count
            elif state == "succeeded":
                ok[day] += count
    peak = max([ok[d] + failed[d] for d in ok] + [1])
    bars = []
    for i, day in enumerate(sorted(ok)):
        ok_h = ok[day] / peak * height
        failed_h = failed[day] / peak * height
        bars.append(
            Bar(
                day,
                ok[day],
                failed[day],
                i * (width + gap),
                height - ok_h,
                ok_h,
                height - ok_h - failed_h,
                failed_h,
            )
        )
    return bars, peak
