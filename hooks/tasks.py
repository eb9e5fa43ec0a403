"""django-q2 entry points of webhooks (scheduled in apps.py)."""

from __future__ import annotations

from hooks import dispatch as fan_out
from hooks import services
from hooks.models import Delivery


def dispatch() -> str:
    return f"{fan_out.dispatch()} events"


def deliver(delivery_id: int) -> str:
    found = (
        Delivery.objects.select_related("webhook__owner", "webhook__token", "event")
        .filter(pk=delivery_id)
        .first()
    )
    if found is None:
        return "gone"
    return services.deliver(found).state


def retry_deliveries() -> str:
    """Deliveries whose backoff has passed (every minute)."""
    states = [d.state for d in services.retry_due()]
    return f"{len(states)} retried, {states.count('sent')} sent"


def prune() -> str:
    return f"{services.prune()} rows removed"
