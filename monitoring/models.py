"""Metrics of servers: raw samples (kept 48 h), 5-minute and hourly rollups (30 days, 1 year),
and each server's collection state. See docs/monitoring.md.

Values are stored as one JSON object per row (``{"cpu": 12.5, "mem_used": ...}``): one row per
server and time, whatever metrics a collector could read, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from core.fields import EncryptedTextField
from core.policy import (
    ADMIN,
    CHANGE,
    CUSTOMER,
    DELETE,
    RESELLER,
    SUPPORT,
    VIEW,
    PolicyQuerySet,
    Rules,
)
from core.validators import validate_plain_text
from servers.models import Server

# Whoever may see the server may see its metrics; nobody edits them.
_READ_WITH_SERVER = Rules(owner="server__owner", owner_may=frozenset({VIEW}), admin_may=None)


class ServerMonitor(models.Model):
    """How a server is collected, and the state between rounds (previous counters for the
    rates, consecutive failures for the status)."""

    class Method(models.TextChoices):
        SSH = "ssh", "Agentless (over the server's connection)"
        NODE_EXPORTER = "node_exporter", "node_exporter /metrics"

    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="monitor")
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.SSH)
    exporter_url = models.CharField(
        max_length=300,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="node_exporter's /metrics URL, e.g. http://10.0.0.5:9100/metrics.",
    )
    enabled = models.BooleanField(default=True)
    failures = models.PositiveIntegerField(default=0, help_text="Failed rounds in a row.")
    counters = models.JSONField(default=dict, blank=True)
    latest = models.JSONField(default=dict, blank=True)
    last_sample_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="server__owner", owner_may=frozenset({VIEW}))

    def __str__(self) -> str:
        return f"monitoring of {self.server_id}"


class Sample(models.Model):
    """One collection of one server (raw, kept 48 hours)."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    values = models.JSONField(default=dict)
    # Per mount and per interface figures of the latest rounds (not rolled up).
    detail = models.JSONField(default=dict, blank=True)

    objects = PolicyQuerySet.as_manager()
    policy = _READ_WITH_SERVER

    class Meta:
        indexes = [models.Index(fields=["server", "at"]), models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.server_id} at {self.at:%Y-%m-%d %H:%M:%S}"


class Rollup(models.Model):
    """min/avg/max per metric over a bucket of ``step`` seconds starting at ``start``:
    ``values`` is ``{"cpu": [min, avg, max], ...}``; ``count`` how many samples it covers."""

    FIVE_MINUTES = 300
    HOUR = 3600

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+")
    step = models.PositiveIntegerField()
    start = models.DateTimeField()
    count = models.PositiveIntegerField()
    values = models.JSONField(default=dict)

    objects = PolicyQuerySet.as_manager()
    policy = _READ_WITH_SERVER

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "step", "start"], name="rollup_once")
        ]
        indexes = [models.Index(fields=["step", "start"])]

    def __str__(self) -> str:
        return f"{self.server_id} {self.step}s at {self.start:%Y-%m-%d %H:%M}"


# --- Alerts and notifications (docs/monitoring.md, "Alerts") ---------------------------

# Everyone may keep rules and channels of their own; the owner's reseller and staff see them.
_OWN_ANYONE = Rules(
    owner_may=frozenset({VIEW, CHANGE, DELETE}),
    add=frozenset({ADMIN, SUPPORT, RESELLER, CUSTOMER}),
)


class NotificationChannel(models.Model):
    """Where a user's alerts are sent: an email address, a webhook URL (JSON body signed
    with HMAC-SHA256) or a Telegram chat (text masked: domains shortened, no addresses)."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"
        TELEGRAM = "telegram", "Telegram"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_channels"
    )
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    kind = models.CharField(max_length=8, choices=Kind.choices)
    target = models.CharField(
        max_length=300,
        help_text="Email: the address. Webhook: the https:// URL. Telegram: the chat id.",
    )
    # The webhook's signing secret or the Telegram bot token.
    secret = EncryptedTextField(blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = _OWN_ANYONE

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("alert_channel", kwargs={"uuid": self.uuid})


class AlertRule(models.Model):
    """A condition watched after every collection round. ``kind`` names a source in
    ``monitoring.alerts`` (built in: metric, server_offline, check_failing,
    certificate_expiring; other apps register theirs)."""

    class Scope(models.TextChoices):
        ALL = "all", "Every server I may see"
        SERVER = "server", "One server"
        LOCATION = "location", "Servers at one location"

    class Comparison(models.TextChoices):
        GT = ">", "above"
        GE = ">=", "at or above"
        LT = "<", "below"
        LE = "<=", "at or below"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_rules"
    )
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    kind = models.CharField(max_length=32, default="metric")
    enabled = models.BooleanField(default=True)
    metric = models.CharField(max_length=32, blank=True, help_text="e.g. cpu, mem_pct, disk_pct")
    comparison = models.CharField(max_length=2, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField(null=True, blank=True)
    duration = models.PositiveIntegerField(
        default=0, help_text="Seconds the condition must hold before the alert fires."
    )
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.ALL)
    server = models.ForeignKey(
        Server, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    location = models.CharField(max_length=100, blank=True, validators=[validate_plain_text])
    days = models.PositiveIntegerField(
        default=14, help_text="Certificates: fire this many days before expiry."
    )
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    silenced_until = models.DateTimeField(
        null=True, blank=True, help_text="No notifications until then (alerts still open)."
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = _OWN_ANYONE

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("alert_rule", kwargs={"uuid": self.uuid})


class Alert(models.Model):
    """One subject (a server, a check, a certificate) for which a rule's condition holds:
    at most one firing alert per rule and subject; resolved ones are the history."""

    class State(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32)
    subject = models.CharField(max_length=200, help_text="Stable key of what the alert is about.")
    label = models.CharField(max_length=200, help_text="What the alert is about, for people.")
    server = models.ForeignKey(
        Server, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.FIRING)
    message = models.TextField(blank=True)
    value = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    silenced_until = models.DateTimeField(null=True, blank=True)

    objects = PolicyQuerySet.as_manager()
    # Owners acknowledge and silence (CHANGE); alerts are made and resolved by the engine.
    policy = Rules(owner_may=frozenset({VIEW, CHANGE}), add=frozenset())

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=models.Q(state="firing"),
                name="one_firing_alert_per_subject",
            )
        ]
        indexes = [models.Index(fields=["state", "started_at"])]

    def __str__(self) -> str:
        return f"{self.rule.name}: {self.label}" if self.rule_id else self.label

    def get_absolute_url(self) -> str:
        return reverse("alert", kwargs={"uuid": self.uuid})


class Delivery(models.Model):
    """One notification to one channel, with its attempts (retried with backoff)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=10, help_text="firing, resolved or test")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="channel__owner", owner_may=frozenset({VIEW}), admin_may=frozenset({VIEW}))

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} to {self.channel_id}"
