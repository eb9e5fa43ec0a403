from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from core import kinds
from core.policy import CANCEL, RETRY, VIEW, PolicyQuerySet, Rules


class Operation(models.Model):
    """One long-running action (provisioning, apply, backup ...) run by a django-q2 worker."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
    # Support may cancel anything; retrying re-checks the target (see retry_operation).
    policy = Rules(
        owner_may=frozenset({VIEW, CANCEL, RETRY}), support_may=frozenset({VIEW, CANCEL})
    )

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=64)
    task = models.CharField(max_length=200, help_text="Dotted path of the function that runs it.")
    args = models.JSONField(default=dict, blank=True)
    target_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    # The policy action on the target that starting this took; a retry needs it again.
    target_action = models.CharField(max_length=32, blank=True)
    # Operations sharing a lock key (e.g. one server) run one at a time.
    lock_key = models.CharField(max_length=100, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="operations"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True, help_text="Current step.")
    error = models.TextField(blank=True)
    # The full error text when ``error`` had to be summarised for the owner (staff only).
    error_detail = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    # Stamped every few seconds by the worker while it runs (core.operations.Heartbeat).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The worker (core.workers.worker_id) that took it off the queue, while it is queued or
    # running: a worker that stops heartbeating before starting it gets it requeued.
    # db_default: the previous release's code inserts rows without it during an upgrade.
    worker = models.CharField(max_length=100, blank=True, default="", db_default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = PolicyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # Each list's ordering, alone and behind each filter it offers (see core/pagination).
        indexes = [
            models.Index(fields=["created_at", "id"], name="operation_created"),
            models.Index(fields=["owner", "created_at"], name="operation_owner_created"),
            models.Index(fields=["state", "created_at"], name="operation_state_created"),
            models.Index(fields=["kind", "created_at"], name="operation_kind_created"),
            models.Index(fields=["lock_key", "created_at"], name="operation_lock_created"),
        ]

    def __str__(self) -> str:
        return f"{self.title} {self.target_label}".strip()

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("operation", kwargs={"uuid": self.uuid})

    def target(self) -> models.Model | None:
        """The object this operation works on, as it is now (one query)."""
        if not self.target_type_id or not self.target_id:
            return None
        model = self.target_type.model_class()
        if model is None:
            return None
        key = "uuid" if any(f.name == "uuid" for f in model._meta.fields) else "pk"
        return model._default_manager.filter(**{key: self.target_id}).first()

    def target_url(self) -> str:
        """The target's page, when it has one (one query: call on detail pages only)."""
        target = self.target()
        return target.get_absolute_url() if hasattr(target, "get_absolute_url") else ""

    @property
    def title(self) -> str:
        """What a person calls it: "Test connection", not server.test_connection."""
        return kinds.describe(self.kind).title

    @property
    def checks(self) -> str:
        return kinds.describe(self.kind).checks

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED

    @property
    def heartbeat_stale(self) -> bool:
        """Running, but its worker has not stamped it for longer than allowed: it died."""
        if self.state != self.State.RUNNING or settings.PANEL_HEARTBEAT_SECONDS <= 0:
            return False
        last = self.heartbeat_at or self.started_at or self.updated_at
        limit = timedelta(seconds=settings.PANEL_OPERATION_STALE_SECONDS)
        return timezone.now() - last > limit

    @property
    def duration(self):
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


VIEW_ONLY = frozenset({VIEW})
# Rows only staff read: nobody owns them.
STAFF_READ = Rules(owner=None, admin_may=VIEW_ONLY)


class OperationLogLine(models.Model):
    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="lines")
    created_at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.TextField()

    policy = Rules(owner="operation__owner", owner_may=VIEW_ONLY, admin_may=VIEW_ONLY)
    objects = PolicyQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.message[:80]


class OperationLock(models.Model):
    """Held while an operation with this lock key runs; the primary key makes it exclusive."""

    key = models.CharField(max_length=100, primary_key=True)
    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="+")
    acquired_at = models.DateTimeField(default=timezone.now)

    policy = STAFF_READ

    def __str__(self) -> str:
        return self.key


class WorkerHeartbeat(models.Model):
    """Written by a scheduled task; /healthz reads it to tell whether a worker is alive."""

    name = models.CharField(max_length=64, primary_key=True)
    beat_at = models.DateTimeField()

    policy = STAFF_READ

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class Worker(models.Model):
    """One running qcluster (all its task processes): stamped every few seconds while it
    lives, so the operations it took off the queue are requeued when it dies."""

    name = models.CharField(max_length=100, primary_key=True)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    beat_at = models.DateTimeField(default=timezone.now)
    # Got SIGTERM: it finishes what it runs and gives back what it had not started.
    stopping = models.BooleanField(default=False, db_default=False)

    policy = STAFF_READ

    def __str__(self) -> str:
        return self.name


class LiveEvent(models.Model):
    """A notice that one row changed; its id is the sequence number shared by pages and sockets.

    Written after the change commits, so a page that reads the newest id before its data
    already shows every change up to that id. Kept briefly (see ``core.tasks.prune_live_events``);
    sockets replay from here when they connect.
    """

    created_at = models.DateTimeField(default=timezone.now)
    topic = models.CharField(max_length=100, help_text="Model label, e.g. core.operation.")
    key = models.CharField(max_length=64, help_text="The row's uuid (hex) or primary key.")
    owner_id = models.BigIntegerField(null=True, blank=True)
    reseller_id = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)

    policy = STAFF_READ  # internal bookkeeping: only staff look, in the admin
    objects = PolicyQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["topic", "id"], name="liveevent_topic_id")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.topic} {self.key}"


class OperationDay(models.Model):
    """Finished operations per day, owner and state. The dashboard's chart sums a few of
    these rows instead of grouping the operations table; kept by ``core.rollups``."""

    day = models.DateField()
    owner_id = models.BigIntegerField()
    state = models.CharField(max_length=12)
    count = models.PositiveIntegerField(default=0)

    # Like audit entries: owners read their own counts, nobody changes one by hand.
    policy = Rules(owner="owner_id", owner_is_id=True, owner_may=VIEW_ONLY, admin_may=VIEW_ONLY)
    objects = PolicyQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "owner_id", "state"], name="operationday_key")
        ]
        indexes = [models.Index(fields=["owner_id", "day"], name="operationday_owner_day")]

    def __str__(self) -> str:
        return f"{self.day} owner {self.owner_id} {self.state}: {self.count}"


class AuditEntry(models.Model):
    """Append-only, hash-chained record of a state change.

    Actor and owner are plain ids, not foreign keys: deleting a user must never rewrite
    (and so break) the chain.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_label = models.CharField(max_length=254, blank=True)
    owner_id = models.BigIntegerField(null=True, blank=True)
    # The reseller shown the entry besides its owner, decided when it is recorded from the
    # object's rules (``core.policy.reseller_route``): the owner's reseller of the day, an
    # invoice's issuer, or nobody (a panel invoice, an API token). A routing hint, outside
    # the hash like the id column's order: see core/audit.py and docs/security.md.
    reseller_id = models.BigIntegerField(null=True, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(max_length=8, blank=True, help_text="Which audit key signed it.")

    # Owners read what concerns them, and a reseller what was recorded for it (its
    # customers' entries while they were its customers, the invoices it issued); nobody,
    # administrators included, changes an entry.
    policy = Rules(
        owner="owner_id",
        owner_is_id=True,
        owner_may=VIEW_ONLY,
        admin_may=VIEW_ONLY,
        reseller_reaches_customers=False,
        issuer="reseller_id",
        issuer_may=VIEW_ONLY,
    )
    objects = PolicyQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["owner_id", "id"], name="audit_owner_id"),
            models.Index(fields=["reseller_id", "id"], name="audit_reseller_id"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.actor_label or 'system'} {self.action} {self.object_label}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit entries are append-only.")


class AuditHead(models.Model):
    """Single row pointing at the newest entry; locked by writers, catches a cut-off tail."""

    last_id = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    policy = STAFF_READ
