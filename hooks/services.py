"""Webhooks: create, change, delete, send a test, and deliver with retries.

Bodies are signed exactly as monitoring's webhook channel signs them
(``monitoring.notify.send_webhook``): ``X-Panel-Signature: sha256=<hex>`` over
``"<X-Panel-Timestamp>." + body``, sent to the addresses resolved and checked once
(no DNS rebinding), public addresses only unless an administrator allowed the webhook.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core import audit
from core.policy import may
from core.services import accept_only, refuse_nul_in
from hooks.models import (
    ALLOW_PRIVATE,
    SUBSCRIBABLE,
    Delivery,
    Event,
    EventType,
    Webhook,
    redact_url,
)
from monitoring import notify

WEBHOOK_FIELDS = ["name", "url", "events", "enabled", "allow_private"]
WEBHOOK_SECRETS = ["secret"]
BACKOFF_SECONDS = 30  # the first retry; each later one waits twice as long


def _validate(hook: Webhook, data: dict, *, creating: bool) -> None:
    errors = {}
    try:
        URLValidator(schemes=["http", "https"])(hook.url)
    except ValidationError:
        errors["url"] = "Give the receiver's https:// or http:// URL."
    events = hook.events
    if not isinstance(events, list) or not events:
        errors["events"] = "Choose at least one event."
    elif any(not isinstance(e, str) or e not in SUBSCRIBABLE for e in events):
        errors["events"] = f"Choose among: {', '.join(SUBSCRIBABLE)}."
    secret = data.get("secret") or ""
    if secret and not 16 <= len(secret) <= 200:
        errors["secret"] = "Between 16 and 200 characters."
    if creating and not secret:
        errors["secret"] = "Give a signing secret (at least 16 characters)."
    if "url" not in errors and hook.allow_private:
        host = urlsplit(hook.url).hostname or ""
        if not notify.is_ip_literal(host):
            # What an administrator allows is an address: a name could be repointed later.
            errors["url"] = "To reach a private address, give it as an IP address, not a name."
    elif "url" not in errors:
        try:  # early word; checked again at every send (the name may point elsewhere later)
            notify.check_destination(hook.url, hook.owner)
        except notify.NotifyError as exc:
            if not exc.retryable:
                errors["url"] = str(exc)
    if errors:
        raise ValidationError(errors)
    hook.full_clean(exclude=["owner", "secret", "events"])


def _clean_events(data: dict) -> None:
    if isinstance(data.get("events"), list | tuple):
        data["events"] = list(dict.fromkeys(data["events"]))


def _set_private(hook: Webhook, data: dict, actor, url_before: str | None) -> None:
    """Only administrators change ``allow_private``; a new URL set by anyone else loses it
    (an administrator allowed one destination, not whatever the owner points it at)."""
    allowed = may(actor, ALLOW_PRIVATE, Webhook)
    if "allow_private" in data:
        wanted = bool(data["allow_private"])
        if wanted != hook.allow_private and not allowed:
            raise ValidationError({"allow_private": "Only administrators allow this."})
        hook.allow_private = wanted
    if not allowed and url_before is not None and url_before != hook.url:
        hook.allow_private = False


@transaction.atomic
def do_create_webhook(*, actor, data: dict, token=None) -> Webhook:
    """A webhook of ``actor``'s (and of ``token``'s, when made with an API token)."""
    accept_only(data, WEBHOOK_FIELDS + WEBHOOK_SECRETS)
    refuse_nul_in(data, WEBHOOK_FIELDS + WEBHOOK_SECRETS)
    data = dict(data)
    _clean_events(data)
    hook = Webhook(owner=actor, token=token)
    for name in WEBHOOK_FIELDS:
        if name in data and name != "allow_private":
            setattr(hook, name, data[name])
    _set_private(hook, data, actor, None)
    _validate(hook, data, creating=True)
    hook.secret = data["secret"]
    hook.save()
    audit.record(
        "webhook.create",
        hook,
        actor=actor,
        changes={"url": [None, redact_url(hook.url)], "events": [None, ",".join(hook.events)]},
    )
    return hook


@transaction.atomic
def do_update_webhook(hook: Webhook, *, actor, data: dict) -> Webhook:
    accept_only(data, WEBHOOK_FIELDS + WEBHOOK_SECRETS)
    refuse_nul_in(data, WEBHOOK_FIELDS + WEBHOOK_SECRETS)
    data = dict(data)
    _clean_events(data)
    if data.get("url") == hook.redacted_url != hook.url:
        # The redacted URL others are shown, sent back unchanged (a form saved by staff or
        # a reseller): keep the stored URL and its credentials.
        del data["url"]
    before = audit.snapshot(hook, WEBHOOK_FIELDS)
    for name in WEBHOOK_FIELDS:
        if name in data and name != "allow_private":
            setattr(hook, name, data[name])
    _set_private(hook, data, actor, before["url"])
    _validate(hook, data, creating=False)
    changes = audit.diff(before, audit.snapshot(hook, WEBHOOK_FIELDS))
    if "url" in changes:  # the append-only chain keeps no credential a URL carries
        changes["url"] = [redact_url(value or "") for value in changes["url"]]
    if data.get("secret"):  # blank keeps the stored secret
        hook.secret = data["secret"]
        changes["secret"] = ["***", "***"]
    hook.save()
    audit.record("webhook.update", hook, actor=actor, changes=changes)
    return hook


@transaction.atomic
def do_delete_webhook(hook: Webhook, *, actor) -> None:
    audit.record("webhook.delete", hook, actor=actor, changes={"url": [redact_url(hook.url), None]})
    hook.delete()


def audit_token_webhooks(sender, instance, **kwargs) -> None:
    """pre_delete of an API token: the webhooks that cascade with it are deleted too, and
    every deletion is audited (``do_delete_token`` names the actor; else it is "system")."""
    actor = getattr(instance, "_deleted_by", None)
    for hook in Webhook.objects.filter(token=instance).select_related("owner"):
        audit.record(
            "webhook.delete", hook, actor=actor, changes={"url": [redact_url(hook.url), None]}
        )


@transaction.atomic
def do_send_test(hook: Webhook, *, actor) -> Delivery:
    """A test event to this webhook, delivered (and retried) like any other."""
    event = Event.objects.create(
        type=EventType.TEST,
        source=f"test:{uuid.uuid4().hex}",
        owner_id=hook.owner_id,
        reseller_id=hook.owner.reseller_id,
        object_type="hooks.webhook",
        object_id=str(hook.uuid),
        data={"webhook": {"uuid": str(hook.uuid), "name": hook.name}},
    )
    delivery = Delivery.objects.create(webhook=hook, event=event)
    audit.record("webhook.test", hook, actor=actor)
    transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def _enqueue(pk: int) -> None:
    from django_q.tasks import async_task

    async_task("hooks.tasks.deliver", pk, group="hooks.deliver")


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, 1, 2, 4, 8 minutes ..."""
    return timedelta(seconds=BACKOFF_SECONDS * 2 ** max(0, attempts - 1))


def deliver(delivery: Delivery, *, now: datetime | None = None) -> Delivery:
    """One attempt. A retryable failure (no answer, 5xx, 408, 429) is tried again after
    ``backoff``, until PANEL_WEBHOOK_ATTEMPTS; then, or for a permanent failure, ``failed``.

    The attempt is claimed first (one UPDATE: counted, and due again only after a lease), so
    two workers never send the same delivery at once and a worker killed mid-send leaves it
    to ``retry_due``: delivered at least once, never lost. Receivers drop repeats by the
    body's ``id``, which is signed (``X-Panel-Delivery`` is not: a replayed request may
    carry any), and refuse stale ``X-Panel-Timestamp``s (docs/api.md#webhooks)."""
    now = now or timezone.now()
    if delivery.state != Delivery.State.PENDING:
        return delivery
    lease = now + timedelta(seconds=2 * settings.PANEL_NOTIFY_TIMEOUT + 60)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    claimed = Delivery.objects.filter(due, pk=delivery.pk, state=Delivery.State.PENDING).update(
        attempts=F("attempts") + 1, next_attempt_at=lease
    )
    delivery.refresh_from_db(fields=["state", "attempts", "next_attempt_at"])
    if not claimed:
        return delivery
    hook, event = delivery.webhook, delivery.event
    # Checked again at every attempt: what was routed to the webhook while its owner could
    # hold one is not sent once that changed (a customer made support staff, deactivated).
    stopped = hook.stopped_because()
    if stopped:
        delivery.state, delivery.next_attempt_at = Delivery.State.FAILED, None
        delivery.last_error = f"Not sent: {stopped}"
        delivery.save()
        return delivery
    body = event.body()
    notice = notify.Notice(event.type, event.type, "", body, delivery.uuid.hex)
    try:
        status = notify.send_webhook(
            hook.url, hook.secret, notice, hook.owner, allow_private=hook.allow_private
        )
        delivery.state, delivery.sent_at, delivery.response_status = "sent", now, status
        delivery.last_error, delivery.next_attempt_at = "", None
    except notify.NotifyError as exc:
        delivery.last_error, delivery.response_status = str(exc)[:1000], exc.status
        if exc.retryable and delivery.attempts < settings.PANEL_WEBHOOK_ATTEMPTS:
            delivery.next_attempt_at = now + backoff(delivery.attempts)
        else:
            delivery.state, delivery.next_attempt_at = Delivery.State.FAILED, None
    delivery.save()
    return delivery


def due_deliveries(now: datetime):
    """Pending deliveries whose wait (or a dead worker's lease) has passed, or that were
    never attempted (their task was lost)."""
    never = Q(next_attempt_at__isnull=True, created_at__lte=now - timedelta(minutes=1))
    return Delivery.objects.filter(
        Q(next_attempt_at__lte=now) | never, state=Delivery.State.PENDING
    ).select_related("webhook__owner", "webhook__token", "event")


def retry_due(now: datetime | None = None, limit: int = 500) -> list[Delivery]:
    now = now or timezone.now()
    return [deliver(d, now=now) for d in due_deliveries(now).order_by("next_attempt_at")[:limit]]


def prune(now: datetime | None = None) -> int:
    """Events (with their deliveries) older than PANEL_WEBHOOK_KEEP_DAYS."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.PANEL_WEBHOOK_KEEP_DAYS)
    deleted, _ = Event.objects.filter(created_at__lt=cutoff).delete()
    return deleted
