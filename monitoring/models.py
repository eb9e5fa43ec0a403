"""Metrics of servers: raw samples (kept 48 h), 5-minute and hourly rollups (30 days, 1 year),
and each server's collection state. See docs/monitoring.md.

Values are stored as one JSON object per row (``{"cpu": 12.5, "mem_used": ...}``): one row per
server and time, whatever metrics a collector could read, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone

from core.policy import VIEW, PolicyQuerySet, Rules
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
