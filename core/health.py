"""The panel's own health: database, channel layer, worker. Read by /healthz and shown to
staff on the dashboard."""

from __future__ import annotations

from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone

from core.models import WorkerHeartbeat

HEARTBEAT_STALE = timedelta(minutes=3)


def checks() -> dict[str, dict]:
    found: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        found["database"] = {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health check
        found["database"] = {"ok": False, "error": str(exc)}
    try:
        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)("healthz.")
        async_to_sync(layer.send)(channel, {"type": "healthz"})
        ok = async_to_sync(layer.receive)(channel).get("type") == "healthz"
        found["channel_layer"] = {"ok": ok}
    except Exception as exc:  # noqa: BLE001
        found["channel_layer"] = {"ok": False, "error": str(exc)}
    beat = None
    if found["database"]["ok"]:
        beat = WorkerHeartbeat.objects.filter(name="default").first()
    fresh = bool(beat and timezone.now() - beat.beat_at < HEARTBEAT_STALE)
    found["worker"] = {"ok": fresh, "last_heartbeat": beat.beat_at.isoformat() if beat else None}
    return found
