"""django-q2 entry points of monitoring (scheduled in apps.py)."""

from __future__ import annotations

from monitoring import collector, storage


def collect() -> str:
    """One collection round (the collector loop, ``manage.py collect_metrics``, runs these
    every PANEL_MONITORING_INTERVAL seconds)."""
    result = collector.collect_round()
    return f"{result.samples} samples, {len(result.failed)} failed, {result.seconds:.1f}s"


def roll_up() -> str:
    return f"rollups written: {storage.roll_up()}"


def prune() -> str:
    return f"deleted: {storage.prune()}"
