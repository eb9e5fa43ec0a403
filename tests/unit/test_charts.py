from datetime import date

from core.charts import daily_bars


def test_bars_stack_and_scale_to_the_busiest_day():
    today = date(2026, 11, 22)
    rows = [
        (date(2026, 11, 22), "succeeded", 3),
        (date(2026, 11, 22), "failed", 1),
        (date(2026, 11, 20), "succeeded", 2),
        (date(2026, 10, 1), "failed", 9),
        (date(2026, 11, 21), "running", 5),
    ]
    bars, peak = daily_bars(rows, days=3, today=today, height=80)
    assert peak == 4 and [b.day.day for b in bars] == [20, 21, 22]
    last = bars[-1]
    assert (last.ok, last.failed) == (3, 1)
    assert last.ok_h == 60 and last.failed_h == 20 and last.failed_y == 0
    assert bars[1].ok_h == 0 and bars[0].ok_h == 40


def test_empty_is_flat():
    bars, peak = daily_bars([], days=14, today=date(2026, 1, 1))
    assert peak == 1 and len(bars) == 14 and all(b.ok_h == 0 for b in bars)
