"""Append-only audit log with a hash chain.

Each entry's hash covers its own fields and the previous entry's hash, and a single head row
records the newest id and hash, so an edited, removed or cut-off entry is found by
``verify_chain`` (``manage.py verify_audit``).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from core.models import AuditEntry, AuditHead

GENESIS = "0" * 64
# IP of the request being served; set by SecurityPolicyMiddleware, read when recording.
current_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_ip", default=None)
SECRET_FIELDS = {"password", "digest", "secret", "key", "private_key"}


def snapshot(obj: models.Model, fields: list[str]) -> dict[str, Any]:
    """JSON-safe values of ``fields`` for a before/after diff."""
    out = {}
    for name in fields:
        value = getattr(obj, f"{name}_id" if _is_fk(obj, name) else name)
        out[name] = _jsonable(value)
    return out


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list]:
    keys = sorted(set(before) | set(after))
    return {
        k: [before.get(k), after.get(k)]
        for k in keys
        if before.get(k) != after.get(k) and k not in SECRET_FIELDS
    }


def _is_fk(obj, name: str) -> bool:
    try:
        return obj._meta.get_field(name).is_relation
    except Exception:  # noqa: BLE001 - not a model field: a plain attribute
        return False


def _jsonable(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def owner_id_of(obj) -> int | None:
    from accounts.models import User

    if isinstance(obj, User):
        return obj.pk
    for attr in ("owner_id", "user_id"):
        if getattr(obj, attr, None) is not None:
            return getattr(obj, attr)
    return None


def record(
    action: str,
    obj: models.Model | None = None,
    *,
    actor=None,
    changes: dict | None = None,
    ip: str | None = None,
    owner_id: int | None = None,
    object_type: str = "",
    object_label: str = "",
) -> AuditEntry:
    """Append one entry. Call inside the transaction that makes the change."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_label = object_label or str(obj)[:254]
        object_id = str(getattr(obj, "uuid", None) or obj.pk)
        owner_id = owner_id if owner_id is not None else owner_id_of(obj)
    else:
        object_id = ""
    actor_obj = actor if getattr(actor, "is_authenticated", False) else None
    if owner_id is None and actor_obj is not None:
        owner_id = actor_obj.pk
    with transaction.atomic():
        head = _locked_head()
        entry = AuditEntry(
            created_at=timezone.now(),
            actor_id=actor_obj.pk if actor_obj else None,
            actor_label=actor_obj.email if actor_obj else "system",
            ip=ip or current_ip.get(),
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_label=object_label[:254],
            owner_id=owner_id,
            changes=changes or {},
            prev_hash=head.last_hash,
        )
        # The id is part of the hash, so reserve it first with a placeholder hash.
        entry.hash = f"pending-{head.last_id}-{timezone.now().timestamp()}"[:64]
        entry.save()
        entry.hash = compute_hash(entry)
        AuditEntry.objects.filter(pk=entry.pk).update(hash=entry.hash)
        AuditHead.objects.filter(pk=head.pk).update(last_id=entry.pk, last_hash=entry.hash)
    return entry


def _locked_head() -> AuditHead:
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditHead.objects.get_or_create(pk=1)
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


def compute_hash(entry: AuditEntry) -> str:
    payload = {
        "id": entry.pk,
        "created_at": entry.created_at.isoformat(),
        "actor_id": entry.actor_id,
        "actor_label": entry.actor_label,
        "ip": entry.ip,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "object_label": entry.object_label,
        "owner_id": entry.owner_id,
        "changes": entry.changes,
        "prev_hash": entry.prev_hash,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class ChainProblem:
    entry_id: int | None
    message: str


def verify_chain(batch_size: int = 2000) -> tuple[int, ChainProblem | None]:
    """Walk the chain oldest first; return (entries checked, first problem or None)."""
    prev_hash = GENESIS
    checked = 0
    last_id = 0
    for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=batch_size):
        if entry.prev_hash != prev_hash:
            return checked, ChainProblem(
                entry.pk,
                f"entry #{entry.pk} does not follow the entry before it "
                f"(#{last_id}): an entry was removed or altered before it",
            )
        if compute_hash(entry) != entry.hash:
            return checked, ChainProblem(entry.pk, f"entry #{entry.pk} was altered")
        prev_hash = entry.hash
        last_id = entry.pk
        checked += 1
    head = AuditHead.objects.filter(pk=1).first()
    if head and (head.last_id != last_id or head.last_hash != prev_hash):
        return checked, ChainProblem(
            head.last_id,
            f"the newest entry should be #{head.last_id} but the chain ends at #{last_id}: "
            "entries were removed from the end",
        )
    return checked, None
