"""Webhooks for integrators: subscriptions, the events they hear about, and deliveries.

An ``Event`` is written once per thing that happened (an operation finished, a website was
created, an alert fired ...) by ``hooks.dispatch``; each webhook that hears it gets a
``Delivery``, sent and retried by ``hooks.services.deliver``. See docs/webhooks.md.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from core.fields import EncryptedTextField
from core.policy import (
    ADD,
    ADMIN,
    CHANGE,
    CUSTOMER,
    DELETE,
    RESELLER,
    SUPPORT,
    VIEW,
    PolicyQuerySet,
    Rules,
    may,
)
from core.redaction import REDACTED, redact_url  # noqa: F401 - imported from here
from core.validators import validate_plain_text


class EventType(models.TextChoices):
    OPERATION_SUCCEEDED = "operation.succeeded", "Operation succeeded"
    OPERATION_FAILED = "operation.failed", "Operation failed"
    WEBSITE_CREATED = "website.created", "Website created"
    WEBSITE_SUSPENDED = "website.suspended", "Website suspended"
    CERTIFICATE_ISSUED = "certificate.issued", "Certificate issued"
    CERTIFICATE_FAILING = "certificate.failing", "Certificate failing"
    VPS_STATE_CHANGED = "vps.state_changed", "VPS state changed"
    ALERT_FIRED = "alert.fired", "Alert fired"
    ALERT_RESOLVED = "alert.resolved", "Alert resolved"
    INVOICE_ISSUED = "invoice.issued", "Invoice issued"
    INVOICE_PAID = "invoice.paid", "Invoice paid"
    TEST = "webhook.test", "Test"


# A policy action: only administrators (who may do every action) let a webhook reach
# private and loopback addresses.
ALLOW_PRIVATE = "allow_private"

# What a webhook may subscribe to (the test event is sent on request only).
SUBSCRIBABLE = [value for value in EventType.values if value != EventType.TEST]


class Webhook(models.Model):
    """A URL that receives the events its owner may see, as signed JSON.

    Made with an API token, it belongs to that token too: it stops when the token is revoked
    or expires and goes when the token is deleted."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks"
    )
    token = models.ForeignKey(
        "accounts.ApiToken",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhooks",
        editable=False,
    )
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    url = models.CharField(max_length=500, help_text="The receiver's https:// (or http://) URL.")
    events = models.JSONField(default=list, help_text="The event types sent to this URL.")
    secret = EncryptedTextField(help_text="Signs every body (HMAC-SHA256).")
    enabled = models.BooleanField(default=True)
    allow_private = models.BooleanField(
        default=False,
        help_text="Administrators only: may send to private and loopback addresses.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner_may=frozenset({VIEW, CHANGE, DELETE}),
        # Support hears every tenant's events and changes nothing: a support webhook would
        # carry them all out. Not added by support; one made before stays read-only to it.
        add=frozenset({ADMIN, RESELLER, CUSTOMER}),
        guard=~models.Q(owner__role=SUPPORT),
    )

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["owner", "name"], name="webhook_owner_name")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("webhook", kwargs={"uuid": self.uuid})

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def url_for(self, user) -> str:
        """The URL as ``user`` may read it: whole for its owner (who typed it), without
        credentials (``redact_url``) for staff and resellers who also see the webhook."""
        return self.url if user is not None and user.pk == self.owner_id else self.redacted_url

    def stopped_because(self) -> str:
        """Why this webhook hears and sends nothing now ("" when it works): switched off,
        its owner deactivated or no longer in a role that may hold webhooks (the policy's
        ``add``: support would hear every tenant's events), or its API token revoked or
        expired. Read by the fan-out, by every delivery attempt and by its pages."""
        if not self.enabled:
            return "Switched off."
        owner = self.owner
        if not owner.is_active:
            return "Its owner's account is deactivated."
        if not may(owner, ADD, Webhook):
            return (
                f"Its owner's role is now {owner.get_role_display()}, which may not hold "
                "webhooks (a staff member's webhook would carry other customers' events out)."
            )
        token = self.token
        if token is not None and not token.is_usable:
            return f"The API token it was made with is {token.status}."
        return ""

    @property
    def active(self) -> bool:
        return not self.stopped_because()


class Event(models.Model):
    """Something that happened, as every receiver is sent it (``data`` is the body's
    ``data``). ``owner_id``/``reseller_id``: who, besides staff, hears about it, the object's
    owner and the reseller its rules name (``core.policy.reseller_route``: the owner's
    reseller, or an invoice's issuer and nobody for the panel's invoices). ``source`` names
    what it was made from, so an event is made once however often its source is read."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=40, choices=EventType.choices)
    created_at = models.DateTimeField(default=timezone.now)
    owner_id = models.BigIntegerField(null=True, blank=True)
    reseller_id = models.BigIntegerField(null=True, blank=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict)
    source = models.CharField(max_length=120, unique=True)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner="owner_id", owner_is_id=True, owner_may=frozenset({VIEW}), admin_may=frozenset({VIEW})
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["created_at"], name="hookevent_created")]

    def __str__(self) -> str:
        return f"{self.type} {self.object_id}"

    def body(self) -> dict:
        """The JSON every receiver gets for this event."""
        return {
            "id": str(self.uuid),
            "type": self.type,
            "timestamp": self.created_at.isoformat(),
            "data": self.data,
        }


class Delivery(models.Model):
    """One event to one webhook, with its attempts (retried with exponential backoff)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="webhook__owner", owner_may=frozenset({VIEW}), admin_may=frozenset({VIEW}))

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["webhook", "event"], name="hook_delivery_once")
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="hook_delivery_due"),
            models.Index(fields=["webhook", "created_at"], name="hook_delivery_webhook"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} to {self.webhook_id}"


class Cursor(models.Model):
    """How far the fan-out has read its sources (one row)."""

    audit_id = models.BigIntegerField(default=0)
    live_id = models.BigIntegerField(default=0)
    # The rescan never reaches below this: events from before the fan-out listened.
    live_floor = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    policy = Rules(owner=None, support_may=frozenset(), admin_may=frozenset({VIEW}))


class SeenState(models.Model):
    """The last state the fan-out saw of a row whose state changes are events (a VPS's)."""

    topic = models.CharField(max_length=100)
    key = models.CharField(max_length=64)
    state = models.CharField(max_length=32)

    policy = Rules(owner=None, support_may=frozenset(), admin_may=frozenset({VIEW}))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["topic", "key"], name="seen_state_once")]
