"""The panel's own health: database, channel layer, worker. Read by /healthz and shown to
staff on the dashboard."""

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


def checks() -> dict[str, dict]:
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
    beat = None
    if found["database"]["ok"]:
        beat = WorkerHeartbeat.objects.filter(name="default").first()
    fresh = bool(beat and timezone.now() - beat.beat_at < HEARTBEAT_STALE)
    found["worker"] = {"ok": fresh, "last_heartbeat": beat.beat_at.isoformat() if beat else None}
    return found
