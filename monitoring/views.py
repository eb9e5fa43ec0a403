"""Monitoring's parts of other apps' pages (added in apps.py through core.sections)."""

from __future__ import annotations

from core import events
from monitoring.series import RANGES
from servers.models import Server


def server_metrics_section(server: Server, user) -> dict:
    """The server page's metrics: its live card and charts."""
    live_since = events.current_seq()  # before the data, as every live page does
    fresh = Server.objects.select_related("monitor").get(pk=server.pk)
    return {"s": fresh, "live_since": live_since, "ranges": list(RANGES)}
