"""Append-only audit log with a keyed hash chain.

Each entry's hash is an HMAC, with a key from the environment (``PANEL_AUDIT_KEYS``, never
in the database), over its own fields and the previous entry's hash; a head row records the
newest id and hash, and a scheduled task writes that head outside the database (a log line
and ``PANEL_AUDIT_WITNESS_FILE``). ``verify_chain`` (``manage.py verify_audit``) names the
first edited, removed or forged entry, and a tail cut off before the last written-out head.
Someone who can write the database but lacks the key cannot make a changed chain verify;
see docs/security.md for what it does not protect against.

``reseller_id`` (the reseller an entry is shown to, from the object's rules when recorded:
``core.policy.reseller_route``) is not hashed: it says who may read the entry, not what
happened, and entries written before it existed got theirs afterwards (core migration 0007).
Someone who can write the database could change whom an entry is shown to, never what it
says.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.utils import timezone

from core.models import AuditEntry, AuditHead
from core.policy import OWNERS_RESELLER, reseller_route

GENESIS = "0" * 64
log = logging.getLogger("panel.audit")
# IP of the request being served; set by SecurityPolicyMiddleware, read when recording.
current_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_ip", default=None)
SECRET_FIELDS = {"password", "digest", "secret", "key", "private_key"}


def snapshot(obj: models.Model, fields: list[str]) -> dict[str, Any]:
    """JSON-safe values of ``fields`` for a before/after diff."""
    out = {}
    for name in fields:
        value = getattr(obj, f"{name}_id" if _is_fk(obj, name) else name)
        out[name] = jsonable(value)
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


def jsonable(value):
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


def _owners_resellers(owner_ids, known=()) -> dict[int, int | None]:
    """Each owner's reseller: from users already loaded (``known``: the actor, the object or
    its loaded owner), else in one query."""
    from accounts.models import User

    found = {u.pk: u.reseller_id for u in known if isinstance(u, User) and u.pk is not None}
    missing = {pk for pk in owner_ids if pk is not None and pk not in found}
    if missing:
        found.update(User.objects.filter(pk__in=missing).values_list("pk", "reseller_id"))
    return found


def _loaded_users(obj, actor) -> list:
    """Users at hand without a query: the actor, the object if it is one, its loaded owner."""
    users = [actor, obj]
    if obj is not None:
        cache = getattr(getattr(obj, "_state", None), "fields_cache", {})
        users += [cache.get(name) for name in ("owner", "user", "customer")]
    return [u for u in users if u is not None]


def reseller_for(obj, owner_id: int | None, actor=None) -> int | None:
    """The reseller an entry about ``obj`` (owned by ``owner_id``) is shown to, from the
    object's rules (``reseller_route``): an issuer, nobody, or the owner's reseller now."""
    route = reseller_route(obj) if obj is not None else OWNERS_RESELLER
    if route != OWNERS_RESELLER:
        return route
    if owner_id is None:
        return None
    return _owners_resellers([owner_id], _loaded_users(obj, actor)).get(owner_id)


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
    reseller_id = reseller_for(obj, owner_id, actor_obj)
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
            reseller_id=reseller_id,
            changes=changes or {},
            prev_hash=head.last_hash,
            key_id=key_id(signing_key()),
        )
        # The id is part of the hash, so reserve it first with a placeholder hash.
        entry.hash = f"pending-{head.last_id}-{timezone.now().timestamp()}"[:64]
        entry.save()
        entry.hash = compute_hash(entry)
        AuditEntry.objects.filter(pk=entry.pk).update(hash=entry.hash)
        AuditHead.objects.filter(pk=head.pk).update(last_id=entry.pk, last_hash=entry.hash)
    return entry


def record_many(
    action: str, objs: list[models.Model], *, actor=None, changes: list[dict] | None = None
) -> int:
    """Append one entry per object of ``objs`` (with ``changes[i]`` for each), chained like
    ``record`` but in a few statements: bulk work (issuing thousands of invoices) would
    otherwise spend most of its time locking the head once per entry. Call inside the
    transaction that makes the change."""
    from core.bulk import insert_rows, update_rows

    if not objs:
        return 0
    actor_obj = actor if getattr(actor, "is_authenticated", False) else None
    key = signing_key()
    now, ip = timezone.now(), current_ip.get()
    fields = [
        "created_at", "actor_id", "actor_label", "ip", "action", "object_type", "object_id",
        "object_label", "owner_id", "reseller_id", "changes", "prev_hash", "hash", "key_id",
    ]  # fmt: skip
    owner_ids = [owner_id_of(obj) for obj in objs]
    if actor_obj is not None:
        owner_ids = [actor_obj.pk if pk is None else pk for pk in owner_ids]
    routes = [reseller_route(obj) for obj in objs]
    resellers = _owners_resellers(
        {pk for pk, route in zip(owner_ids, routes, strict=True) if route == OWNERS_RESELLER},
        [actor_obj] if actor_obj is not None else [],
    )  # one query for them all
    with transaction.atomic():
        head = _locked_head()
        entries = []
        for i, obj in enumerate(objs):
            owner_id, route = owner_ids[i], routes[i]
            entries.append(
                AuditEntry(
                    created_at=now,
                    actor_id=actor_obj.pk if actor_obj else None,
                    actor_label=actor_obj.email if actor_obj else "system",
                    ip=ip,
                    action=action,
                    object_type=obj._meta.label_lower,
                    object_id=str(getattr(obj, "uuid", None) or obj.pk),
                    object_label=str(obj)[:254],
                    owner_id=owner_id,
                    reseller_id=resellers.get(owner_id) if route == OWNERS_RESELLER else route,
                    changes=(changes[i] if changes else None) or {},
                    prev_hash="",
                    # Unique placeholders until the ids (part of the hash) are known.
                    hash=f"pending-{head.last_id}-{now.timestamp()}-{i}"[:64],
                    key_id=key_id(key),
                )
            )
        rows = [[getattr(e, f) for f in fields] for e in entries]
        ids = insert_rows(AuditEntry, fields, rows, returning=True)
        prev = head.last_hash
        for entry, pk in zip(entries, ids, strict=True):
            entry.pk, entry.prev_hash = pk, prev
            entry.hash = prev = compute_hash(entry, key)
        update_rows(
            AuditEntry, "id", ["prev_hash", "hash"], [[e.prev_hash, e.hash, e.pk] for e in entries]
        )
        AuditHead.objects.filter(pk=head.pk).update(last_id=entries[-1].pk, last_hash=prev)
    return len(entries)


def _locked_head() -> AuditHead:
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditHead.objects.get_or_create(pk=1)
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


def signing_key() -> str:
    if not settings.AUDIT_KEYS:
        raise ImproperlyConfigured("PANEL_AUDIT_KEYS must be set to write the audit log.")
    return settings.AUDIT_KEYS[0]


def key_id(key: str) -> str:
    """A short public name for a key, stored with each entry so rotation keeps verifying."""
    return hashlib.sha256(f"panel-audit-key:{key}".encode()).hexdigest()[:8]


def _key_for(entry: AuditEntry) -> str | None:
    for key in settings.AUDIT_KEYS:
        if key_id(key) == entry.key_id:
            return key
    return None


def compute_hash(entry: AuditEntry, key: str | None = None) -> str:
    key = key if key is not None else (_key_for(entry) or "")
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
        "key_id": entry.key_id,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key.encode(), blob.encode(), hashlib.sha256).hexdigest()


@dataclass
class ChainProblem:
    entry_id: int | None
    message: str


def read_witness(path: str | None = None) -> list[tuple[int, str]]:
    """(id, hash) pairs the witness task wrote out, oldest first (missing file: none)."""
    file = Path(path or settings.AUDIT_WITNESS_FILE)
    if not file.exists():
        return []
    pairs = []
    for line in file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit():
            pairs.append((int(parts[1]), parts[2]))
    return pairs


def write_witness() -> tuple[int, str]:
    """Write the chain's head outside the database: a log line and a line in the file."""
    head = AuditHead.objects.filter(pk=1).first()
    last_id, last_hash = (head.last_id, head.last_hash) if head else (0, GENESIS)
    stamp = timezone.now().isoformat()
    log.info("audit head #%s %s", last_id, last_hash)
    file = Path(settings.AUDIT_WITNESS_FILE)
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("a") as out:
        out.write(f"{stamp} {last_id} {last_hash}\n")
    return last_id, last_hash


def verify_chain(
    batch_size: int = 2000, witness: list[tuple[int, str]] | None = None
) -> tuple[int, ChainProblem | None]:
    """Walk the chain oldest first; return (entries checked, first problem or None).

    ``witness``: heads written out earlier (``read_witness()``); each must still be in the
    chain, unchanged, so a tail cut off and a head row moved back are found.
    """
    prev_hash = GENESIS
    checked = 0
    last_id = 0
    witnessed = dict(witness or [])
    for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=batch_size):
        if entry.prev_hash != prev_hash:
            return checked, ChainProblem(
                entry.pk,
                f"entry #{entry.pk} does not follow the entry before it "
                f"(#{last_id}): an entry was removed or altered before it",
            )
        if _key_for(entry) is None:
            return checked, ChainProblem(
                entry.pk, f"entry #{entry.pk} was signed with a key not in PANEL_AUDIT_KEYS"
            )
        if not hmac.compare_digest(compute_hash(entry), entry.hash):
            return checked, ChainProblem(entry.pk, f"entry #{entry.pk} was altered")
        if entry.pk in witnessed and witnessed.pop(entry.pk) != entry.hash:
            return checked, ChainProblem(
                entry.pk, f"entry #{entry.pk} differs from the head written out earlier"
            )
        prev_hash = entry.hash
        last_id = entry.pk
        checked += 1
    missing = sorted(i for i in witnessed if i > 0)
    if missing:
        return checked, ChainProblem(
            missing[-1],
            f"entry #{missing[-1]} was written out as the head earlier but is gone: "
            "entries were removed from the end",
        )
    head = AuditHead.objects.filter(pk=1).first()
    if head and (head.last_id != last_id or head.last_hash != prev_hash):
        return checked, ChainProblem(
            head.last_id,
            f"the newest entry should be #{head.last_id} but the chain ends at #{last_id}: "
            "entries were removed from the end",
        )
    return checked, None
