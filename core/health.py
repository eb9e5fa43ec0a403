"""The panel's own health: database, channel layer, worker. Read by /healthz and shown to
staff on the dashboard.

For load balancers a web process answers two narrower questions:
- live (/healthz/live): the process runs and serves requests; nothing else is asked, so a
  database outage does not get every web process restarted;
- ready (/healthz/ready): it can serve a page now (database and channel layer answer) and is
  not draining for a restart (core/management/commands/runweb.py). The worker is left out:
  pages work without one, and /healthz reports it for the panel as a whole.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone

from core.models import WorkerHeartbeat

HEARTBEAT_STALE = timedelta(minutes=3)
PROBE_SECONDS = 2


async def _probe_layer() -> None:
    """The layer takes a message (Redis answers), within a bound. Only a send: receiving in
    a web process competes with its open websockets for the layer's receive loop, and with
    Redis that wait never ended (the self-check operation does the full round trip)."""
    layer = get_channel_layer()
    channel = await layer.new_channel("healthz.")
    await asyncio.wait_for(layer.send(channel, {"type": "healthz"}), PROBE_SECONDS)


_draining = False


def start_draining() -> None:
    """From now on this process reports not ready (it is stopping)."""
    global _draining
    _draining = True


def draining() -> bool:
    return _draining


def checks(*, worker: bool = True) -> dict[str, dict]:
    """Each component's state; ``worker=False`` leaves the worker heartbeat out (readiness)."""
    found: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        found["database"] = {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health check
        found["database"] = {"ok": False, "error": str(exc)}
    try:
        async_to_sync(_probe_layer)()
        found["channel_layer"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001
        found["channel_layer"] = {"ok": False, "error": str(exc) or exc.__class__.__name__}
    if not worker:
        return found
    beat = None
    if found["database"]["ok"]:
        beat = WorkerHeartbeat.objects.filter(name="default").first()
    fresh = bool(beat and timezone.now() - beat.beat_at < HEARTBEAT_STALE)
    found["worker"] = {"ok": fresh, "last_heartbeat": beat.beat_at.isoformat() if beat else None}
    return found
