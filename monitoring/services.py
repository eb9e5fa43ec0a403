"""State changes of monitoring, audited in the same transaction."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from core import audit
from monitoring.models import ServerMonitor

MONITOR_FIELDS = ["method", "exporter_url", "enabled"]


@transaction.atomic
def do_update_monitor(monitor: ServerMonitor, *, actor, data: dict) -> ServerMonitor:
    """How a server is collected: agentless or node_exporter (with its URL), or not at all."""
    changes = {}
    for name in MONITOR_FIELDS:
        if name in data and getattr(monitor, name) != data[name]:
            changes[name] = [getattr(monitor, name), data[name]]
            setattr(monitor, name, data[name])
    if monitor.method == ServerMonitor.Method.NODE_EXPORTER and not monitor.exporter_url:
        raise ValidationError("Give node_exporter's /metrics URL.")
    monitor.full_clean()
    if changes:
        if "method" in changes or "exporter_url" in changes:
            monitor.counters = {}  # rates never mix two collectors' counters
        monitor.save()
        audit.record("monitoring.update", monitor.server, actor=actor, changes=changes)
    return monitor
