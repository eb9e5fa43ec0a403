"""Push operation progress and log lines to Channels groups.

With Redis (REDIS_URL) workers publish straight into the shared layer. The embedded
in-memory layer lives inside one process, so there the web process runs a relay that reads
new progress and log lines from the database and publishes them locally (see relay.py).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.contenttypes.models import ContentType

from core.models import Operation, OperationLogLine


def layer_is_shared() -> bool:
    return "InMemory" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]


def operation_groups(op: Operation) -> list[str]:
    groups = [f"op.{op.uuid.hex}", "ops.all", f"ops.owner.{op.owner_id}"]
    reseller_id = getattr(op.owner, "reseller_id", None)
    if reseller_id:
        groups.append(f"ops.reseller.{reseller_id}")
    return groups


def update_message(op: Operation) -> dict:
    target_model = ""
    if op.target_type_id:
        target_model = ContentType.objects.get_for_id(op.target_type_id).model
    return {
        "type": "operation.update",
        "uuid": op.uuid.hex,
        "kind": op.kind,
        "target_model": target_model,
        "target_id": op.target_id,
        "state": op.state,
        "state_label": op.get_state_display(),
        "progress": op.progress,
        "message": op.message,
        "error": op.error,
        "finished": op.is_finished,
    }


def log_message(op: Operation, line: OperationLogLine) -> dict:
    return {
        "type": "operation.log",
        "uuid": op.uuid.hex,
        "id": line.pk,
        "level": line.level,
        "message": line.message,
        "at": line.created_at.isoformat(),
    }


def send(groups: list[str], message: dict) -> None:
    layer = get_channel_layer()
    for group in groups:
        async_to_sync(layer.group_send)(group, message)


def publish_update(op: Operation) -> None:
    if layer_is_shared():
        send(operation_groups(op), update_message(op))


def publish_log(op: Operation, line: OperationLogLine) -> None:
    if layer_is_shared():
        send([f"op.{op.uuid.hex}"], log_message(op, line))
