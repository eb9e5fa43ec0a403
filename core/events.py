"""Live events: tell open pages that a row changed, so nothing is polled and nothing is missed.

An app calls ``changed(obj)`` after it changes a row (inside or outside a transaction). Once
the change commits, a ``LiveEvent`` row is written; its id is the event's sequence number.
Pages render with the newest sequence they show (``current_seq()``, read *before* their
data) and their websocket replays every event after it on connect.

Delivery: with Redis the writer publishes straight into the shared channel layer. The
embedded in-memory layer lives in one process, so there the web process tails the table
(``core.relay``) and publishes locally. Operation log lines are a second stream whose
sequence is the line's own id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from core import bulk
from core.models import LiveEvent, Operation, OperationLogLine

log = logging.getLogger(__name__)


def layer_is_shared() -> bool:
    return "InMemory" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]


def topic_of(obj_or_model) -> str:
    return obj_or_model._meta.label_lower


def key_of(obj: Model) -> str:
    value = getattr(obj, "uuid", None)
    return value.hex if value is not None else str(obj.pk)


# Channel groups. A socket joins the audience groups of the topics its page shows, or the
# key group of the one object a detail page shows. Names allow [a-z0-9._-] only.
def group_all(topic: str) -> str:
    return f"live.{topic}.all"


def group_owner(topic: str, user_id: int) -> str:
    return f"live.{topic}.owner.{user_id}"


def group_reseller(topic: str, user_id: int) -> str:
    return f"live.{topic}.reseller.{user_id}"


def group_key(topic: str, key: str) -> str:
    return f"live.{topic}.key.{key}"


def group_log(op_key: str) -> str:
    return f"live.log.{op_key}"


def audience_groups(topic: str, user) -> list[str]:
    """The groups through which ``user`` hears about rows of ``topic`` (the policy's rule)."""
    from core.policy import stream_groups

    return stream_groups(user, f"live.{topic}")


def event_groups(event: LiveEvent) -> list[str]:
    groups = [group_all(event.topic), group_key(event.topic, event.key)]
    if event.owner_id:
        groups.append(group_owner(event.topic, event.owner_id))
    if event.reseller_id:
        groups.append(group_reseller(event.topic, event.reseller_id))
    return groups


def event_message(event: LiveEvent) -> dict:
    return {
        "type": "live.changed",
        "seq": event.pk,
        "model": event.topic,
        "key": event.key,
        "data": event.data,
    }


def log_notice(op_key: str, line_id: int) -> dict:
    """Lines up to ``line_id`` exist. A notice, not the line: the socket reads the lines after
    the last one it sent, so a notice lost to a full channel costs nothing but a moment."""
    return {"type": "live.log", "op": op_key, "id": line_id}


def log_message(op_key: str, line: OperationLogLine) -> dict:
    """A log line as API clients of the socket receive it."""
    return {
        "type": "log",
        "op": op_key,
        "id": line.pk,
        "level": line.level,
        "message": line.message,
        "at": line.created_at.isoformat(),
    }


def current_seq() -> int:
    """The newest sequence number. Read it before the data a page shows."""
    return LiveEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def changed(obj: Model, *, owner=None, data: dict | None = None) -> None:
    """Record that ``obj`` was created or changed; open pages showing it update that row.

    ``owner`` (default ``obj.owner``) decides who hears about it: the owner, the owner's
    reseller and staff. ``data`` is a small JSON summary for API clients of the socket.
    """
    owner = owner if owner is not None else getattr(obj, "owner", None)
    fields = {
        "topic": topic_of(obj),
        "key": key_of(obj),
        "owner_id": getattr(owner, "pk", None),
        "reseller_id": getattr(owner, "reseller_id", None),
        "data": data if data is not None else {},
    }
    transaction.on_commit(lambda: _emit(fields))


def changed_ref(topic: str, key: str, *, owner_id: int | None, reseller_id: int | None) -> None:
    """``changed`` for a row known only by its topic and key (e.g. an operation's target)."""
    fields = {
        "topic": topic,
        "key": key,
        "owner_id": owner_id,
        "reseller_id": reseller_id,
        "data": {},
    }
    transaction.on_commit(lambda: _emit(fields))


def _emit(fields: dict) -> None:
    event = LiveEvent.objects.create(**fields)
    if layer_is_shared():
        send(event_groups(event), event_message(event))
    for listener in _listeners:
        try:
            listener(event)
        except Exception:  # noqa: BLE001 - a listener never fails the change it hears about
            log.exception("live event listener %r failed", listener)


_listeners: list[Callable[[LiveEvent], None]] = []


def on_event(listener: Callable[[LiveEvent], None]) -> None:
    """Call ``listener(event)`` after each event written one at a time (not the bulk ones of
    ``changed_many``: samples). For work that should start at once rather than at its next
    scheduled run (webhooks' fan-out); it must be quick and must not rely on being called."""
    if listener not in _listeners:
        _listeners.append(listener)


def operation_changed(op: Operation) -> None:
    changed(op, owner=op.owner, data=operation_data(op))


def operation_data(op: Operation) -> dict:
    target = ContentType.objects.get_for_id(op.target_type_id).model if op.target_type_id else ""
    return {
        "kind": op.kind,
        "target_model": target,
        "target_id": op.target_id,
        "state": op.state,
        "progress": op.progress,
        "message": op.message,
        "error": op.error,
        "finished": op.is_finished,
    }


def log_line(op: Operation, line: OperationLogLine) -> None:
    if layer_is_shared():
        message = log_notice(op.uuid.hex, line.pk)
        transaction.on_commit(lambda: send([group_log(op.uuid.hex)], message))


def send(groups: list[str], message: dict) -> None:
    layer = get_channel_layer()
    for group in groups:
        async_to_sync(layer.group_send)(group, message)


def changed_many(topic: str, items: list[tuple[str, object, dict]]) -> None:
    """Many ``changed`` events of one topic in one insert: ``items`` are (key, owner, data).
    For writers that change many rows at once (a monitoring round announces every server's
    new sample). Rows are plain tuples: a model instance per event was a tenth of a round."""
    now = timezone.now()
    rows = [
        (now, topic, key, getattr(owner, "pk", None), getattr(owner, "reseller_id", None), data)
        for key, owner, data in items
    ]
    if rows:
        transaction.on_commit(lambda: _emit_many(rows))


_MANY_FIELDS = ("created_at", "topic", "key", "owner_id", "reseller_id", "data")


def _emit_many(rows: list[tuple]) -> None:
    shared = layer_is_shared()
    with transaction.atomic():
        # The sequence numbers are needed only to publish (the relay reads the table).
        ids = bulk.insert_rows(LiveEvent, _MANY_FIELDS, rows, returning=shared)
    if shared:
        for pk, row in zip(ids, rows, strict=True):
            event = LiveEvent(pk=pk, **dict(zip(_MANY_FIELDS, row, strict=True)))
            send(event_groups(event), event_message(event))
