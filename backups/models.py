"""Backups with restic: targets (repositories), one job per system account, and the runs
that record what each backup took. Restic does the work on the account's server; the rows
are what the panel knows (backups/restic.py builds the commands, tasks.py runs them)."""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField
from core.policy import CHANGE, VIEW, PolicyQuerySet, Rules
from core.validators import validate_plain_text
from servers.validators import validate_address

# Absolute paths of plain characters only: they end up in restic's argv and its ssh
# command line (no spaces, quotes or shell characters, no "..").
REPO_PATH = re.compile(r"/(?:[A-Za-z0-9._-]+/?)*")
SFTP_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
HOST_KEY = re.compile(
    r"(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]{20,2000}"
)
SNAPSHOT_ID = re.compile(r"[0-9a-f]{8,64}")
# S3: an http(s) endpoint of a host (checked by validate_address) and an optional port, a
# bucket by S3's naming rules, and keys that fit on one line of a credentials file.
S3_ENDPOINT = re.compile(r"(https?)://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:]{2,39}\])(?::(\d{1,5}))?")
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
S3_ACCESS_KEY = re.compile(r"[A-Za-z0-9_+/=-]{3,128}")
# restic reads the keys with an INI parser that takes "#" and ";" anywhere as the start of a
# comment and a leading quote as quoting: a secret with those would reach S3 cut short.
S3_SECRET_KEY = re.compile(r"(?![\"'`])[\x21\x22\x24-\x3a\x3c-\x7e]{8,256}")
S3_SECRET_RULE = "8 to 256 printable characters: no spaces, # or ;, not starting with a quote."


def validate_repo_path(value: str) -> None:
    if not REPO_PATH.fullmatch(value or "") or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise ValidationError("An absolute path of letters, digits and . _ - only.")


def validate_sftp_user(value: str) -> None:
    if value and not SFTP_USER.fullmatch(value):
        raise ValidationError("A user name of lower-case letters, digits and _ . - only.")


def validate_host_key(value: str) -> None:
    if value and not HOST_KEY.fullmatch(value.strip()):
        raise ValidationError("The server's host key as 'TYPE BASE64' (e.g. ssh-ed25519 AAAA...).")


# A path in a snapshot (browsing, restoring one file or folder): absolute, no "." or ".."
# segments, no control characters and none of restic's pattern characters (* ? [ ] \),
# since restore --include takes a pattern. Anything else a customer names a file is fine
# (it only ever travels as one argv item).
SNAPSHOT_PATH = re.compile(r"/(?:[^\x00-\x1f\x7f*?\[\]\\/]+/?)*")


def validate_snapshot_path(value: str) -> None:
    parts = (value or "").split("/")
    if not SNAPSHOT_PATH.fullmatch(value or "") or any(p in (".", "..") for p in parts):
        raise ValidationError("An absolute path without . or .. parts or * ? [ ] \\.")
    if len(value) > 1024:
        raise ValidationError("At most 1024 characters.")


def validate_s3_endpoint(value: str) -> None:
    match = S3_ENDPOINT.fullmatch(value or "")
    if match is None:
        raise ValidationError("An endpoint as http(s)://HOST[:PORT], nothing else.")
    host = match.group(2).strip("[]")
    validate_address(host)
    if match.group(3) and not 1 <= int(match.group(3)) <= 65535:
        raise ValidationError("The port is 1 to 65535.")


def validate_s3_bucket(value: str) -> None:
    if value and (not S3_BUCKET.fullmatch(value) or ".." in value):
        raise ValidationError("A bucket name: 3-63 lower-case letters, digits, . and -.")


STAFF = Rules(owner=None)


class BackupTarget(models.Model):
    """A restic repository: a directory on a server, or a directory on another host over
    SFTP. The repository password is encrypted at rest. Staff only."""

    class Kind(models.TextChoices):
        LOCAL = "local", "Directory on a server"
        SFTP = "sftp", "SFTP to another host"
        S3 = "s3", "S3-compatible storage"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Unreachable"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=63, unique=True, validators=[validate_plain_text])
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.LOCAL)
    server = models.ForeignKey(
        "servers.Server",
        on_delete=models.PROTECT,
        related_name="backup_targets",
        help_text="Local: the server the directory is on (only its accounts use it). SFTP: "
        "the server that initialises and checks the repository.",
    )
    path = models.CharField(
        max_length=255,
        validators=[validate_repo_path],
        help_text="The repository's directory (on the server, or on the SFTP host; for S3 "
        "the prefix in the bucket, / for the whole bucket).",
    )
    sftp_host = models.CharField(
        "SFTP host", max_length=253, blank=True, validators=[validate_address]
    )
    sftp_port = models.PositiveIntegerField(
        "SFTP port", default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    sftp_user = models.CharField(
        "SFTP user", max_length=32, blank=True, validators=[validate_sftp_user]
    )
    sftp_host_key = models.CharField(
        "SFTP host key",
        max_length=2100,
        blank=True,
        validators=[validate_host_key],
        help_text="The SFTP host's public host key (TYPE BASE64): connections to any other "
        "key are refused.",
    )
    sftp_private_key = EncryptedTextField("SFTP private key", blank=True)
    s3_endpoint = models.CharField(
        "S3 endpoint",
        max_length=300,
        blank=True,
        validators=[validate_s3_endpoint],
        help_text="http(s)://HOST[:PORT] of the S3-compatible service.",
    )
    s3_bucket = models.CharField(
        "S3 bucket", max_length=63, blank=True, validators=[validate_s3_bucket]
    )
    s3_access_key = EncryptedTextField("S3 access key id", blank=True)
    s3_secret_key = EncryptedTextField("S3 secret access key", blank=True)
    password = EncryptedTextField("repository password", blank=True)
    # A new repository password while it is being added to the repository (restic key
    # add): it becomes ``password`` only once it opens the repository.
    pending_password = EncryptedTextField(blank=True, editable=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    free_bytes = models.BigIntegerField(null=True, blank=True, editable=False)
    checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = STAFF

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("backup-target", kwargs={"uuid": self.uuid})

    @property
    def lock_key(self) -> str:
        """Backups, forgets and restores of one repository run one at a time (prune
        needs the repository to itself)."""
        return f"backup-target:{self.uuid.hex}"

    @property
    def sftp_public_key(self) -> str:
        """The public half of the SFTP key, to allow on the SFTP host."""
        from servers.transport import TransportError, public_key_of

        if not self.sftp_private_key:
            return ""
        try:
            return public_key_of(self.sftp_private_key)
        except TransportError:
            return ""

    @property
    def repository(self) -> str:
        if self.kind == self.Kind.SFTP:
            return f"sftp:{self.sftp_user}@{self.sftp_host}:{self.path}"
        if self.kind == self.Kind.S3:
            return f"s3:{self.s3_endpoint}/{self.s3_bucket}{self.path.rstrip('/')}"
        return self.path

    @property
    def measures_free_space(self) -> bool:
        """S3 storage has no free-space figure to ask for (the provider's quota, if any,
        is not part of the protocol)."""
        return self.kind != self.Kind.S3

    def clean(self) -> None:
        super().clean()
        if self.kind == self.Kind.S3:
            missing = {
                name: "Required for an S3 target."
                for name in ("s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret_key")
                if not getattr(self, name)
            }
            if missing:
                raise ValidationError(missing)
            errors = {}
            if not S3_ACCESS_KEY.fullmatch(self.s3_access_key):
                errors["s3_access_key"] = "Letters, digits and _ + / = - only."
            if not S3_SECRET_KEY.fullmatch(self.s3_secret_key):
                errors["s3_secret_key"] = S3_SECRET_RULE
            if errors:
                raise ValidationError(errors)
        if self.kind == self.Kind.SFTP:
            missing = {
                name: "Required for an SFTP target."
                for name in ("sftp_host", "sftp_user", "sftp_host_key")
                if not getattr(self, name)
            }
            if missing:
                raise ValidationError(missing)


class BackupJob(models.Model):
    """Backups of one system account (its files, a dump of each of its databases, its
    sites' configuration and a manifest) into one target, on a schedule."""

    class Status(models.TextChoices):
        NEVER = "never", "Never run"
        OK = "ok", "Succeeded"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey(
        "websites.SystemAccount", on_delete=models.CASCADE, related_name="backup_jobs"
    )
    target = models.ForeignKey(BackupTarget, on_delete=models.PROTECT, related_name="jobs")
    enabled = models.BooleanField(default=True)
    every_minutes = models.PositiveIntegerField(
        "every (minutes)",
        default=1440,
        validators=[MinValueValidator(60), MaxValueValidator(7 * 1440)],
        help_text="How often it runs (1440: daily). A backup older than this alerts.",
    )
    keep_daily = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(366)]
    )
    keep_weekly = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(0), MaxValueValidator(520)]
    )
    last_status = models.CharField(
        max_length=8, choices=Status.choices, default=Status.NEVER, editable=False
    )
    last_error = models.TextField(blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_size_bytes = models.BigIntegerField(null=True, blank=True, editable=False)
    # The latest automatic test restore (TestRestore): "" never, else its state.
    last_test_status = models.CharField(max_length=8, blank=True, editable=False)
    last_test_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    # The account's owner reads its backups and restores them (CHANGE); staff set them up.
    policy = Rules(owner="account__user", owner_may=frozenset({VIEW, CHANGE}))

    class Meta:
        ordering = ["account__name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "target"], name="backup_job_once")
        ]

    def __str__(self) -> str:
        return f"{self.account.name} → {self.target.name}"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("backup-job", kwargs={"uuid": self.uuid})

    @property
    def owner(self):
        return self.account.user

    @property
    def tag(self) -> str:
        """The restic tag of this job's snapshots (its retention and listing use it)."""
        return f"job-{self.uuid.hex}"


class BackupRun(models.Model):
    """One backup of a job: what restic reported, and whether its snapshot still exists."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(BackupJob, on_delete=models.CASCADE, related_name="runs")
    operation = models.ForeignKey(
        "core.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    snapshot_id = models.CharField(max_length=64, blank=True)
    files = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    bytes_added = models.BigIntegerField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    # Retention removed the snapshot (restic forget): it can no longer be restored.
    forgotten = models.BooleanField(default=False)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="job__account__user", owner_may=frozenset({VIEW}), add=frozenset())

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["job", "-started_at"], name="backup_run_job_started")]

    def __str__(self) -> str:
        return f"{self.job.account.name} {self.started_at:%Y-%m-%d %H:%M}"

    def get_absolute_url(self) -> str:
        return self.job.get_absolute_url()

    @property
    def restorable(self) -> bool:
        return self.state == self.State.SUCCEEDED and bool(self.snapshot_id) and not self.forgotten


class TestRestore(models.Model):
    """One automatic test restore of a job's latest snapshot: the whole snapshot restored
    into a scratch directory on the account's server (restic verifies every file's content
    against the snapshot's hashes, and the restored files are compared with the snapshot's
    listing), and each dump loaded into a scratch database. Both are removed afterwards."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"

    __test__ = False  # not a pytest class, whatever its name

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    job = models.ForeignKey(BackupJob, on_delete=models.CASCADE, related_name="test_restores")
    run = models.ForeignKey(
        BackupRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    operation = models.ForeignKey(
        "core.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    error = models.TextField(blank=True)
    files_checked = models.PositiveIntegerField(null=True, blank=True)
    bytes_checked = models.BigIntegerField(null=True, blank=True)
    databases_loaded = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="job__account__user", owner_may=frozenset({VIEW}), add=frozenset())

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["job", "-started_at"], name="backup_test_job_started")]

    def __str__(self) -> str:
        return f"test restore of {self.job_id} {self.started_at:%Y-%m-%d %H:%M}"

    def get_absolute_url(self) -> str:
        return self.job.get_absolute_url()


class SnapshotListing(models.Model):
    """One folder of a snapshot as ``restic ls`` listed it (the snapshot browser lists a
    folder at a time, on request, through an Operation; pages read these rows)."""

    MAX_ENTRIES = 5000

    run = models.ForeignKey(BackupRun, on_delete=models.CASCADE, related_name="listings")
    path = models.CharField(max_length=1024)
    # [{name, type, size, permissions, uid, gid, mtime}], folders first, then by name.
    entries = models.JSONField(default=list)
    truncated = models.BooleanField(default=False)
    listed_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="run__job__account__user", owner_may=frozenset({VIEW}), add=frozenset())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "path"], name="snapshot_listing_once")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.path}"

    def get_absolute_url(self) -> str:
        return self.run.job.get_absolute_url()
