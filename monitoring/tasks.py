"""django-q2 entry points of monitoring (scheduled in apps.py)."""

from __future__ import annotations

from django.utils import timezone

from monitoring import collector, storage


def collect() -> str:
    """One collection round (the collector loop, ``manage.py collect_metrics``, runs these
    every PANEL_MONITORING_INTERVAL seconds)."""
    result = collector.collect_round()
    return f"{result.samples} samples, {len(result.failed)} failed, {result.seconds:.1f}s"


def roll_up() -> str:
    return f"rollups written: {storage.roll_up()}"


def prune() -> str:
    from monitoring import checks

    return f"deleted: {storage.prune()}, check results: {checks.prune()}"


def run_checks() -> str:
    from monitoring import checks

    result = checks.run_due()
    return f"{result.ran} checks run; down: {result.went_down}; up again: {result.came_up}"


def evaluate() -> str:
    """Alert rules against the newest data (after each round, and every minute)."""
    from monitoring.alerts import evaluate_alerts

    result = evaluate_alerts()
    errors = "".join(f"; {name}: {error}" for name, error in result.errors.items())
    return f"{len(result.fired)} fired, {len(result.resolved)} resolved{errors}"


def deliver(delivery_id: int) -> str:
    from monitoring.models import Delivery
    from monitoring.services import deliver as attempt

    delivery = Delivery.objects.select_related("channel__owner", "alert__rule").filter(
        pk=delivery_id
    )
    found = delivery.first()
    if found is None:
        return "gone"
    return attempt(found).state


def retry_deliveries() -> str:
    """Deliveries whose backoff has passed (every minute)."""
    from monitoring.models import Delivery
    from monitoring.services import deliver as attempt

    due = Delivery.objects.select_related("channel__owner", "alert__rule").filter(
        state=Delivery.State.PENDING, next_attempt_at__lte=timezone.now()
    )
    states = [attempt(d).state for d in due[:500]]
    return f"{len(states)} retried, {states.count('sent')} sent"


def apply_maintenance() -> str:
    """Servers into and out of maintenance as windows open and close (also at the start of
    every collection round)."""
    from monitoring.maintenance import apply_windows

    changed = apply_windows()
    return f"{len(changed)} servers changed status"
