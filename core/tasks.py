"""Worker tasks of the panel itself."""

from __future__ import annotations

import shutil

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.models import LiveEvent, Operation, WorkerHeartbeat
from core.operations import OperationContext, OperationError, fail_dead


def heartbeat() -> str:
    """Scheduled every minute: proves to /healthz that a worker takes tasks."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(name="default", defaults={"beat_at": now})
    return now.isoformat()


def witness_audit_head() -> str:
    """Scheduled: write the audit chain's head outside the database (see core/audit.py)."""
    from core.audit import write_witness

    last_id, last_hash = write_witness()
    return f"#{last_id} {last_hash}"


def reap_stale_operations() -> int:
    """Scheduled every minute: fail operations whose worker died (no heartbeat for longer
    than PANEL_OPERATION_STALE_SECONDS, or nothing reported for longer than the task timeout
    allows), so their lock is freed and the portal tells the truth."""
    from datetime import timedelta

    limit = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["timeout"] + 120)
    running = Operation.objects.filter(state=Operation.State.RUNNING)
    stale = [op for op in running if op.heartbeat_stale or op.updated_at < limit]
    for op in stale:
        fail_dead(op)
    return len(stale)


LIVE_EVENT_HOURS = 2


def prune_live_events() -> int:
    """Scheduled: drop live events older than a page is likely to stay open. The newest is
    always kept, so a socket can tell "nothing happened" from "too old, re-fetch"."""
    from datetime import timedelta

    newest = LiveEvent.objects.order_by("-id").values_list("id", flat=True).first()
    if newest is None:
        return 0
    cutoff = timezone.now() - timedelta(hours=LIVE_EVENT_HOURS)
    deleted, _ = LiveEvent.objects.filter(created_at__lt=cutoff, id__lt=newest).delete()
    return deleted


def self_check(ctx: OperationContext) -> str:
    """A staff-run check of the panel's own parts, step by step."""
    ctx.progress(10, "Checking the database")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    ctx.log(f"Database ({connection.vendor}) answers.")
    ctx.progress(40, "Checking the channel layer")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, {"type": "ping"})
    if async_to_sync(layer.receive)(channel).get("type") != "ping":
        raise OperationError("The channel layer did not return the message sent.")
    ctx.log(f"Channel layer {settings.CHANNEL_LAYERS['default']['BACKEND']} works.")
    ctx.progress(70, "Checking disk space")
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(settings.VAR_DIR)
    free_pct = usage.free * 100 // usage.total
    ctx.log(f"{usage.free // 2**30} GiB free ({free_pct}%) under {settings.VAR_DIR}.")
    if free_pct < 5:
        raise OperationError(f"Only {free_pct}% disk space is free under {settings.VAR_DIR}.")
    ctx.progress(100, "All checks passed")
    return "All checks passed"
