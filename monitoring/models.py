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
from core.redaction import redact_url
from core.validators import validate_plain_text
from monitoring.fields import JSONTextField
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
    # What every round rewrites, as one ``json`` value (see monitoring/fields.py):
    # {"counters": {...}, "latest": {...}}, the counters for the next round's rates and
    # the newest sample's values. ``counters`` and ``latest`` below read it.
    state = JSONTextField(null=True, blank=True, editable=False)
    # The two jsonb columns the state replaced (migration 0005 copied them into it): kept
    # for the code before it during an upgrade, read only where ``state`` is empty.
    old_counters = models.JSONField(default=dict, blank=True, db_column="counters")
    old_latest = models.JSONField(default=dict, blank=True, db_column="latest")
    last_sample_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The server's "maintenance" status was set by a maintenance window (not by a person),
    # so the window's end hands the status back to collection (monitoring/maintenance.py).
    in_window = models.BooleanField(default=False, db_default=False, editable=False)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="server__owner", owner_may=frozenset({VIEW}))

    def __str__(self) -> str:
        return f"monitoring of {self.server_id}"

    @property
    def counters(self) -> dict:
        return self.old_counters if self.state is None else self.state.get("counters", {})

    @counters.setter
    def counters(self, value: dict) -> None:
        self.state = {"counters": value, "latest": self.latest}

    @property
    def latest(self) -> dict:
        return self.old_latest if self.state is None else self.state.get("latest", {})

    @latest.setter
    def latest(self, value: dict) -> None:
        self.state = {"counters": self.counters, "latest": value}


class Sample(models.Model):
    """One collection of one server (raw, kept 48 hours)."""

    # No index of its own: (server, at) below serves every lookup by server (one index
    # fewer to write per sample).
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+", db_index=False)
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

    # Indexed by the unique (server, step, start).
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+", db_index=False)
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

    @property
    def redacted_target(self) -> str:
        """A webhook's URL without what may be a credential (``core.redaction.redact_url``:
        Slack's and Discord's URLs carry their token in the path); an address or chat id
        as it is."""
        return redact_url(self.target) if self.kind == self.Kind.WEBHOOK else self.target

    def target_for(self, user) -> str:
        """The target as ``user`` may read it: whole for its owner (who typed it), redacted
        for colleagues it is shared with, its reseller and staff (and in the audit chain)."""
        if user is not None and user.pk == self.owner_id:
            return self.target
        return self.redacted_target


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


class MaintenanceWindow(models.Model):
    """A scheduled stretch (once, or every week at the same wall-clock time in
    ``time_zone``) during which the servers in scope show "maintenance", raise no alerts and
    do not go offline. See monitoring/maintenance.py and docs/monitoring.md."""

    class Scope(models.TextChoices):
        ALL = "all", "Every server I may change"
        SERVER = "server", "One server"
        LOCATION = "location", "Servers at one location"

    class Repeat(models.TextChoices):
        ONCE = "once", "Once"
        WEEKLY = "weekly", "Every week"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="maintenance_windows"
    )
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.SERVER)
    server = models.ForeignKey(
        Server, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    location = models.CharField(max_length=100, blank=True, validators=[validate_plain_text])
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    repeat = models.CharField(max_length=8, choices=Repeat.choices, default=Repeat.ONCE)
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="Weekly windows keep their wall-clock time in this zone (e.g. Europe/Berlin).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = _OWN_ANYONE

    class Meta:
        ordering = ["starts_at", "id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("maintenance_window", kwargs={"uuid": self.uuid})

    @property
    def current_state(self) -> str:
        """ "open", "scheduled" or "ended" now (for lists; no query)."""
        from monitoring.maintenance import state

        return state(self, timezone.now())

    @property
    def next_start(self):
        from monitoring.maintenance import next_start

        return next_start(self, timezone.now())


# --- Uptime checks -----------------------------------------------------------------------


class Check(models.Model):
    """An uptime check run by the scheduler (``monitoring.checks.run_due``): HTTP(S), a TCP
    port, a DNS answer or ping. ``retries`` failed runs in a row before it is down."""

    class Kind(models.TextChoices):
        HTTP = "http", "HTTP(S)"
        TCP = "tcp", "TCP port"
        DNS = "dns", "DNS answer"
        PING = "ping", "Ping"

    class Status(models.TextChoices):
        UNKNOWN = "unknown", "Not run yet"
        UP = "up", "Up"
        DOWN = "down", "Down"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uptime_checks"
    )
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    kind = models.CharField(max_length=4, choices=Kind.choices, default=Kind.HTTP)
    target = models.CharField(
        max_length=300,
        help_text="HTTP: the URL. TCP: host:port. DNS: the name to resolve. Ping: the host.",
    )
    keyword = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_plain_text],
        help_text="HTTP: must be on the page.",
    )
    expect_status = models.PositiveIntegerField(
        null=True, blank=True, help_text="HTTP: the status expected (default: any below 400)."
    )
    dns_type = models.CharField("DNS type", max_length=5, default="A")
    expected = models.CharField(
        max_length=300,
        blank=True,
        help_text="DNS: a record the answer must hold, e.g. 203.0.113.5.",
    )
    dns_server = models.CharField(
        "DNS server", max_length=60, blank=True, help_text="DNS: ask this server (ip or ip:port)."
    )
    interval = models.PositiveIntegerField(default=60, help_text="Seconds between runs.")
    timeout = models.PositiveIntegerField(default=10, help_text="Seconds one run may take.")
    retries = models.PositiveIntegerField(
        default=2, help_text="Failed runs in a row before the check is down."
    )
    enabled = models.BooleanField(default=True)
    public = models.BooleanField(default=False, help_text="Shown on your public status page.")
    # Made by another app for one of its objects ("website:<uuid hex>"), one check each.
    source = models.CharField(max_length=80, blank=True, editable=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.UNKNOWN)
    failures = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    last_response_ms = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    tls_days_left = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = _OWN_ANYONE

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source"], condition=~models.Q(source=""), name="one_check_per_source"
            )
        ]
        indexes = [models.Index(fields=["enabled", "next_check_at"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("uptime_check", kwargs={"uuid": self.uuid})

    def host_port(self) -> tuple[str, int | None]:
        return split_host_port(self.target)

    def dns_server_port(self) -> tuple[str, int]:
        host, port = split_host_port(self.dns_server)
        return host, port or 53


def split_host_port(value: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port) if port.isdigit() else None
    return value, None


class CheckResult(models.Model):
    """One run of a check (kept 31 days): the history and the uptime percentages."""

    uptime_check = models.ForeignKey(Check, on_delete=models.CASCADE, related_name="results")
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    response_ms = models.FloatField(null=True, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner="uptime_check__owner", owner_may=frozenset({VIEW}), admin_may=frozenset({VIEW})
    )

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["uptime_check", "at"]), models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.uptime_check_id} at {self.at:%Y-%m-%d %H:%M:%S}"


class StatusPage(models.Model):
    """A customer's public status page (opt-in): no login, only the checks marked public,
    reached by an unguessable slug."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="status_page"
    )
    slug = models.CharField(max_length=43, unique=True)
    title = models.CharField(max_length=100, validators=[validate_plain_text])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = _OWN_ANYONE

    def __str__(self) -> str:
        return self.title
