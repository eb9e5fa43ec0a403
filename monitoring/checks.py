"""Running uptime checks: the scheduler (every minute) runs the checks that are due in a
bounded pool, never in a request; results are stored in one insert, statuses updated, and
changes announced live. Uptime percentages come from the stored results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, Q
from django.utils import timezone

from core import audit, events
from monitoring import probes
from monitoring.models import Check, CheckResult

RETENTION = timedelta(days=31)


@dataclass
class RunResult:
    ran: int
    went_down: list[str]
    came_up: list[str]


def _probe(check: Check) -> probes.ProbeResult:
    try:
        return probes.run_probe(check, owner=check.owner)
    finally:
        connections.close_all()  # this worker thread's own connections


def run_checks(checks: list[Check], now: datetime | None = None) -> RunResult:
    """Run ``checks`` at once (at most PANEL_CHECK_WORKERS in parallel) and record them."""
    now = now or timezone.now()
    result = RunResult(0, [], [])
    if not checks:
        return result
    workers = max(1, min(settings.PANEL_CHECK_WORKERS, len(checks)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="checks") as pool:
        outcomes = list(pool.map(_probe, checks))
    rows = []
    with transaction.atomic():
        for check, outcome in zip(checks, outcomes, strict=True):
            rows.append(
                CheckResult(
                    uptime_check=check,
                    at=now,
                    ok=outcome.ok,
                    response_ms=outcome.response_ms,
                    status_code=outcome.status_code,
                    error=outcome.error[:1000],
                )
            )
            before = check.status
            check.failures = 0 if outcome.ok else check.failures + 1
            if outcome.ok:
                check.status = Check.Status.UP
            elif check.failures >= max(1, check.retries):
                check.status = Check.Status.DOWN
            check.last_checked_at, check.last_error = now, outcome.error[:1000]
            check.last_response_ms = outcome.response_ms
            if outcome.tls_days_left is not None or outcome.ok:
                check.tls_days_left = outcome.tls_days_left
            check.next_check_at = now + timedelta(seconds=check.interval)
            check.save(
                update_fields=[
                    "status",
                    "failures",
                    "last_checked_at",
                    "last_error",
                    "last_response_ms",
                    "tls_days_left",
                    "next_check_at",
                ]
            )
            if before != check.status:
                if check.status == Check.Status.DOWN:
                    result.went_down.append(check.name)
                elif before == Check.Status.DOWN:
                    result.came_up.append(check.name)
                audit.record(
                    "monitoring.check.status", check, changes={"status": [before, check.status]}
                )
            events.changed(check, data={"status": check.status, "ms": check.last_response_ms})
        CheckResult.objects.bulk_create(rows)
    result.ran = len(rows)
    return result


def run_due(now: datetime | None = None) -> RunResult:
    now = now or timezone.now()
    due = Check.objects.filter(enabled=True).filter(
        Q(next_check_at__isnull=True) | Q(next_check_at__lte=now)
    )
    checks = list(due.select_related("owner").order_by("next_check_at")[:1000])
    return run_checks(checks, now)


def uptime(checks, now: datetime | None = None) -> dict[int, dict[str, float | None]]:
    """Per check id: the share of successful runs over 24 hours and 30 days, in percent
    (None without runs). One query for all the checks."""
    now = now or timezone.now()
    day, month = now - timedelta(hours=24), now - timedelta(days=30)
    rows = (
        CheckResult.objects.filter(uptime_check__in=checks, at__gte=month)
        .values("uptime_check_id")
        .annotate(
            runs_30d=Count("id"),
            ok_30d=Count("id", filter=Q(ok=True)),
            runs_24h=Count("id", filter=Q(at__gte=day)),
            ok_24h=Count("id", filter=Q(at__gte=day, ok=True)),
        )
    )
    found = {}
    for row in rows:
        found[row["uptime_check_id"]] = {
            "24h": round(100 * row["ok_24h"] / row["runs_24h"], 2) if row["runs_24h"] else None,
            "30d": round(100 * row["ok_30d"] / row["runs_30d"], 2) if row["runs_30d"] else None,
        }
    return found


def prune(now: datetime | None = None) -> int:
    now = now or timezone.now()
    deleted, _ = CheckResult.objects.filter(at__lt=now - RETENTION).delete()
    return deleted
