"""The fan-out: turn what happened into webhook events and deliveries.

Nothing in other apps calls this. It reads two records the panel keeps anyway:

- the audit chain, for what people and rules did (a website created or suspended, an alert
  fired or resolved). Entries become visible in id order (writers hold the chain's head
  row until they commit), so a plain id cursor misses nothing;
- live events (core/events.py), for what workers finished (an operation succeeded or
  failed, a certificate issued or failing) and for VPS state, compared with the state last
  seen. Their ids may become visible out of order, so each run also reads the last
  ``RESCAN`` seconds again; ``Event.source`` keeps an event from being made twice.

It runs every minute (``hooks.tasks.dispatch``) and, to be prompt, whenever a live event
that may matter is written (``nudge``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core import audit
from core.models import AuditEntry, LiveEvent, Operation
from core.policy import OWNERS_RESELLER, stream_scope
from hooks.models import Cursor, Delivery, Event, EventType, SeenState, Webhook

RESCAN = timedelta(seconds=120)
BATCH = 2000
OPERATION_TOPIC = "core.operation"
VPS_TOPIC = "vps.vps"
AUDIT_EVENTS = {
    "website.create": EventType.WEBSITE_CREATED,
    "website.suspend": EventType.WEBSITE_SUSPENDED,
    "monitoring.alert.firing": EventType.ALERT_FIRED,
    "monitoring.alert.resolved": EventType.ALERT_RESOLVED,
    "invoice.issue": EventType.INVOICE_ISSUED,
    "invoice.paid": EventType.INVOICE_PAID,
}
CERTIFICATE_KINDS = {"certificate.issue", "certificate.install"}


@dataclass
class Found:
    type: str
    source: str
    owner_id: int | None
    object_type: str
    object_id: str
    data: dict
    created_at: datetime
    # Who else hears it: a reseller's id, None for nobody (a panel invoice), or, by default,
    # the owner's reseller when the event is made (``core.policy.reseller_route``).
    reseller_id: int | None | str = field(default=OWNERS_RESELLER)


def nudge(event: LiveEvent) -> None:
    """core.events listener: start a fan-out now when this event may be one (an operation
    queued or finished, a VPS, an alert) and some webhook listens."""
    if event.topic == OPERATION_TOPIC:
        if not (event.data.get("finished") or event.data.get("state") == "queued"):
            return
    elif event.topic not in (VPS_TOPIC, "monitoring.alert"):
        return
    if not Webhook.objects.filter(enabled=True).exists():
        return
    from django_q.tasks import async_task

    async_task("hooks.tasks.dispatch", group="hooks.dispatch")


def dispatch(now: datetime | None = None) -> int:
    """Make the events that happened since the last run and their deliveries; returns how
    many events were made. Concurrent runs are serialised on the cursor row."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            cursor = _cursor()
            if not Webhook.objects.filter(enabled=True).exists():
                # Nobody listens: skip ahead, so a first webhook does not hear old news.
                cursor.audit_id, cursor.live_id = _newest(AuditEntry), _newest(LiveEvent)
                cursor.live_floor = cursor.live_id
                cursor.updated_at = now
                cursor.save()
                return 0
            found = _from_audit(cursor) + _from_live(cursor, now)
            events = _store(found)
            deliveries = _fan_out(events)
            cursor.updated_at = now
            cursor.save()
            transaction.on_commit(lambda: _enqueue([d.pk for d in deliveries]))
    except IntegrityError:
        return 0  # another run made these events first (SQLite has no row lock to wait on)
    return len(events)


def _cursor() -> Cursor:
    cursor = Cursor.objects.select_for_update().filter(pk=1).first()
    if cursor is None:
        live = _newest(LiveEvent)
        Cursor.objects.get_or_create(
            pk=1, defaults={"audit_id": _newest(AuditEntry), "live_id": live, "live_floor": live}
        )
        cursor = Cursor.objects.select_for_update().get(pk=1)
    return cursor


def _newest(model) -> int:
    return model.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _resellers(owner_ids) -> dict[int, int | None]:
    users = get_user_model().objects.filter(pk__in={i for i in owner_ids if i})
    return dict(users.values_list("pk", "reseller_id"))


# --- sources ------------------------------------------------------------------------------


def _from_audit(cursor: Cursor) -> list[Found]:
    newest = _newest(AuditEntry)
    entries = list(
        AuditEntry.objects.filter(
            id__gt=cursor.audit_id, id__lte=newest, action__in=list(AUDIT_EVENTS)
        ).order_by("id")[:BATCH]
    )
    cursor.audit_id = entries[-1].pk if len(entries) == BATCH else newest
    sites = _websites([e.object_id for e in entries if e.object_type == "websites.website"])
    alerts = _alerts([e.object_id for e in entries if e.object_type == "monitoring.alert"])
    invoices = _invoices([e.object_id for e in entries if e.object_type == "billing.invoice"])
    by_type = {"websites.website": sites, "monitoring.alert": alerts, "billing.invoice": invoices}
    found = []
    for entry in entries:
        data = by_type.get(entry.object_type, {}).get(entry.object_id)
        if data is None:  # gone since: say what the entry knew
            data = {entry.object_type.split(".")[-1]: {"uuid": entry.object_id}}
        found.append(
            Found(
                type=AUDIT_EVENTS[entry.action],
                source=f"audit:{entry.pk}",
                owner_id=entry.owner_id,
                # The reseller the entry was recorded for, from the object's rules: an
                # invoice's issuer (nobody for the panel's), not the customer's reseller now.
                reseller_id=entry.reseller_id,
                object_type=entry.object_type,
                object_id=entry.object_id,
                data=data,
                created_at=entry.created_at,
            )
        )
    return found


def _from_live(cursor: Cursor, now: datetime) -> list[Found]:
    newest = _newest(LiveEvent)
    rows = list(
        LiveEvent.objects.filter(
            Q(topic=OPERATION_TOPIC, data__finished=True) | Q(topic=VPS_TOPIC),
            Q(id__gt=cursor.live_id) | Q(created_at__gte=now - RESCAN),
            id__gt=cursor.live_floor,
            id__lte=newest,
        ).order_by("id")[:BATCH]
    )
    cursor.live_id = rows[-1].pk if len(rows) == BATCH else max(newest, cursor.live_id)
    ops = [r for r in rows if r.topic == OPERATION_TOPIC]
    last_vps: dict[str, LiveEvent] = {}
    for row in rows:
        if row.topic == VPS_TOPIC:
            last_vps[row.key] = row
    return _operations(ops) + _vps_states(list(last_vps.values()))


def _operations(rows: list[LiveEvent]) -> list[Found]:
    ended = [r for r in rows if r.data.get("state") in ("succeeded", "failed")]
    keys = {r.key for r in ended}
    ops = {
        op.uuid.hex: op
        for op in Operation.objects.filter(uuid__in=list(keys)).select_related(
            "owner", "target_type"
        )
    }
    certs = _certificates(
        [op.target_id for op in ops.values() if op.kind in CERTIFICATE_KINDS and op.target_id]
    )
    found = []
    for row in ended:
        op = ops.get(row.key)
        if op is None:
            continue
        state = row.data["state"]
        data = {"operation": _operation_data(op, state)}
        found.append(
            Found(
                type=f"operation.{state}",
                source=f"operation:{row.key}:{state}",
                owner_id=op.owner_id,
                reseller_id=op.owner.reseller_id,
                object_type=OPERATION_TOPIC,
                object_id=str(op.uuid),
                data=data,
                created_at=op.finished_at or row.created_at,
            )
        )
        cert = certs.get(op.target_id)
        if op.kind in CERTIFICATE_KINDS and cert is not None:
            issued = state == "succeeded"
            found.append(
                Found(
                    type=EventType.CERTIFICATE_ISSUED if issued else EventType.CERTIFICATE_FAILING,
                    source=f"certificate:{row.key}:{state}",
                    owner_id=op.owner_id,
                    reseller_id=op.owner.reseller_id,
                    object_type="websites_certificates.certificate",
                    object_id=op.target_id,
                    data={**cert, "operation": str(op.uuid)},
                    created_at=op.finished_at or row.created_at,
                )
            )
    return found


def _operation_data(op: Operation, state: str) -> dict:
    return {
        "uuid": str(op.uuid),
        "kind": op.kind,
        "title": op.title,
        "state": state,
        "message": op.message,
        "error": op.error if state == "failed" else "",
        "target_type": op.target_type.model if op.target_type_id else None,
        "target_id": op.target_id or None,
        "target_label": op.target_label,
        "created_at": audit.jsonable(op.created_at),
        "started_at": audit.jsonable(op.started_at),
        "finished_at": audit.jsonable(op.finished_at),
    }


def _vps_states(rows: list[LiveEvent]) -> list[Found]:
    from vps.models import Vps

    if not rows:
        return []
    by_key = {row.key: row for row in rows}
    vpses = {
        v.uuid.hex: v for v in Vps.objects.filter(uuid__in=list(by_key)).select_related("owner")
    }
    seen = dict(
        SeenState.objects.filter(topic=VPS_TOPIC, key__in=list(by_key)).values_list("key", "state")
    )
    found = []
    for key, row in by_key.items():
        vps = vpses.get(key)
        if vps is None or seen.get(key) == vps.state:
            continue
        SeenState.objects.update_or_create(topic=VPS_TOPIC, key=key, defaults={"state": vps.state})
        found.append(
            Found(
                type=EventType.VPS_STATE_CHANGED,
                source=f"vps:{key}:{row.pk}",
                owner_id=vps.owner_id,
                reseller_id=vps.owner.reseller_id,
                object_type=VPS_TOPIC,
                object_id=str(vps.uuid),
                data={
                    "vps": {
                        "uuid": str(vps.uuid),
                        "hostname": vps.hostname,
                        "state": vps.state,
                        "previous_state": seen.get(key),
                        "message": vps.state_message,
                    }
                },
                created_at=row.created_at,
            )
        )
    return found


def _websites(keys: list[str]) -> dict[str, dict]:
    from websites.models import Website

    if not keys:
        return {}
    return {
        str(s.uuid): {
            "website": {
                "uuid": str(s.uuid),
                "domain": s.domain,
                "kind": s.kind,
                "status": s.status,
                "suspended": s.suspended,
                "suspension_reason": s.suspension_reason,
            }
        }
        for s in Website.objects.filter(uuid__in=keys)
    }


def _invoices(keys: list[str]) -> dict[str, dict]:
    from billing.models import Invoice

    if not keys:
        return {}
    return {
        str(i.uuid): {
            "invoice": {
                "uuid": str(i.uuid),
                "number": i.number,
                "kind": i.kind,
                "state": i.state,
                "currency": i.currency,
                "total": str(i.total),
                "balance": str(i.balance),
                "due_date": i.due_date.isoformat() if i.due_date else None,
                "period_start": i.period_start.isoformat() if i.period_start else None,
            }
        }
        for i in Invoice.objects.filter(uuid__in=keys)
    }


def _alerts(keys: list[str]) -> dict[str, dict]:
    from monitoring.models import Alert

    if not keys:
        return {}
    return {
        str(a.uuid): {
            "alert": {
                "uuid": str(a.uuid),
                "rule": a.rule.name,
                "kind": a.kind,
                "subject": a.label,
                "state": a.state,
                "message": a.message,
                "value": a.value,
                "started_at": audit.jsonable(a.started_at),
                "resolved_at": audit.jsonable(a.resolved_at),
            }
        }
        for a in Alert.objects.filter(uuid__in=keys).select_related("rule")
    }


def _certificates(keys: list[str]) -> dict[str, dict]:
    from websites.certificates.models import Certificate

    if not keys:
        return {}
    return {
        str(c.uuid): {
            "certificate": {
                "uuid": str(c.uuid),
                "domains": c.domains.split(),
                "status": c.status,
                "not_after": audit.jsonable(c.not_after),
                "error": c.last_error,
                "website": str(c.website.uuid),
            }
        }
        for c in Certificate.objects.filter(uuid__in=keys).select_related("website")
    }


# --- events and deliveries ------------------------------------------------------------------


def _store(found: list[Found]) -> list[Event]:
    if not found:
        return []
    existing = set(
        Event.objects.filter(source__in=[f.source for f in found]).values_list("source", flat=True)
    )
    fresh = {f.source: f for f in found if f.source not in existing}  # once per source
    resellers = _resellers(f.owner_id for f in fresh.values() if f.reseller_id == OWNERS_RESELLER)
    events = [
        Event(
            type=f.type,
            source=f.source,
            owner_id=f.owner_id,
            reseller_id=resellers.get(f.owner_id or 0)
            if f.reseller_id == OWNERS_RESELLER
            else f.reseller_id,
            object_type=f.object_type,
            object_id=f.object_id,
            data=f.data,
            created_at=f.created_at,
        )
        for f in fresh.values()
    ]
    created = Event.objects.bulk_create(events)
    if any(e.pk is None for e in created):  # a backend that returns no ids
        created = list(Event.objects.filter(source__in=list(fresh)))
    return created


def _fan_out(events: list[Event]) -> list[Delivery]:
    """A delivery for each webhook that hears each event: its type is subscribed, and the
    policy routes the event to the webhook's owner (the object's owner, its reseller, or
    staff), one query per webhook. A webhook that is stopped (``Webhook.stopped_because``:
    its owner deactivated or moved to a role that may not hold webhooks, such as support,
    whose routing is every tenant's; its token revoked or expired) hears nothing."""
    if not events:
        return []
    ids = [e.pk for e in events]
    rows = []
    for hook in Webhook.objects.filter(enabled=True).select_related("owner", "token"):
        if hook.stopped_because():
            continue
        heard = Event.objects.filter(stream_scope(hook.owner), pk__in=ids, type__in=hook.events)
        rows += [Delivery(webhook=hook, event_id=pk) for pk in heard.values_list("pk", flat=True)]
    created = Delivery.objects.bulk_create(rows)
    if any(d.pk is None for d in created):
        created = list(Delivery.objects.filter(event_id__in=ids))
    return created


def _enqueue(delivery_ids: list[int]) -> None:
    from django_q.tasks import async_task

    for pk in delivery_ids:
        async_task("hooks.tasks.deliver", pk, group="hooks.deliver")
