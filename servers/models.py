from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField
from core.policy import (
    ADMIN,
    APPLY,
    CHANGE,
    DELETE,
    RESELLER,
    VIEW,
    PolicyQuerySet,
    Rules,
)
from core.validators import validate_multiline_text, validate_plain_text
from servers.validators import (
    validate_address,
    validate_cidr,
    validate_server_name,
    validate_unix_user,
)

COMMENT = re.compile(r"[A-Za-z0-9 .,_:/()+-]*")


def validate_comment(value: str) -> None:
    if not COMMENT.fullmatch(value):
        raise ValidationError("Use letters, digits, spaces and . , _ : / ( ) + - only.")


PORT = [MinValueValidator(1), MaxValueValidator(65535)]
# A server on the panel's own host ("local" transport) is for administrators alone: owners
# still see it, but every other action leaves it out.
NOT_LOCAL = ~models.Q(transport="local")


class Server(models.Model):
    class Kind(models.TextChoices):
        PHYSICAL = "physical", "Physical"
        VPS = "vps", "VPS"

    class Status(models.TextChoices):
        UNKNOWN = "unknown", "Not contacted yet"
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Offline"
        MAINTENANCE = "maintenance", "Maintenance"

    class Transport(models.TextChoices):
        SSH = "ssh", "SSH"
        LOCAL = "local", "This machine (local)"

    class Auth(models.TextChoices):
        KEY = "key", "SSH key"
        PASSWORD = "password", "Password"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=63, unique=True, validators=[validate_server_name])
    address = models.CharField(max_length=253, validators=[validate_address])
    ssh_port = models.PositiveIntegerField("SSH port", default=22, validators=PORT)
    ssh_user = models.CharField(
        "SSH user", max_length=32, default="root", validators=[validate_unix_user]
    )
    transport = models.CharField(max_length=8, choices=Transport.choices, default=Transport.SSH)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PHYSICAL)
    location = models.CharField(max_length=100, blank=True, validators=[validate_plain_text])
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UNKNOWN)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="servers",
        help_text="An administrator or a reseller.",
    )
    notes = models.TextField(blank=True, validators=[validate_multiline_text])
    auth_method = models.CharField(
        "authentication", max_length=10, choices=Auth.choices, default=Auth.KEY
    )
    private_key = EncryptedTextField(blank=True)
    public_key = models.TextField(blank=True)
    password = EncryptedTextField(blank=True)
    # Host key pinned at first contact; a different key lands in pending_host_key and the
    # panel refuses to connect until an administrator accepts it.
    host_key = models.TextField(blank=True)
    pending_host_key = models.TextField(blank=True)
    # Per-server overrides of the profile keys services declare (servers.engine.profile).
    profile = models.JSONField(default=dict, blank=True)
    facts = models.JSONField(default=dict, blank=True)
    facts_at = models.DateTimeField(null=True, blank=True)
    # What "Prepare server" installed or found installed (servers/prepare.py): os, packages
    # with versions, nginx, php versions, prepared_at. Empty: never prepared.
    components = models.JSONField(default=dict, blank=True)
    # fail2ban's bans as last read by an Operation (servers/fail2ban.py): {"jails": {jail:
    # [address, ...]}, "read_at": iso}.
    bans = models.JSONField(default=dict, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # The panel's address and the SSH port as the server itself sees them ($SSH_CONNECTION):
    # the firewall guard judges rules by these, which stay right behind NAT or port-forwards.
    panel_address = models.GenericIPAddressField(null=True, blank=True)
    panel_ssh_port = models.PositiveIntegerField(null=True, blank=True)
    # Set just before an apply swaps files in, cleared once it is verified and committed:
    # while set, the next apply first checks every managed file on the server (a worker died
    # or a connection dropped between the two).
    apply_run = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner_may=frozenset({VIEW, CHANGE, DELETE, APPLY}),
        add=frozenset({ADMIN, RESELLER}),
        guard=NOT_LOCAL,
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("server", kwargs={"uuid": self.uuid})

    @property
    def lock_key(self) -> str:
        return f"server:{self.uuid.hex}"

    def clean(self):
        super().clean()
        if self.owner_id and self.owner.role not in self.policy.add:
            raise ValidationError({"owner": "Servers belong to an administrator or a reseller."})
        ssh_password = self.transport == self.Transport.SSH and (
            self.auth_method == self.Auth.PASSWORD
        )
        if ssh_password and not self.password:
            raise ValidationError({"password": "Give the SSH password or use a key."})

    def host_key_fingerprint(self, key: str | None = None) -> str:
        from servers.transport import fingerprint

        return fingerprint(key if key is not None else self.host_key)


class FirewallRule(models.Model):
    class Action(models.TextChoices):
        ALLOW = "allow", "Allow"
        DENY = "deny", "Deny"

    class Protocol(models.TextChoices):
        TCP = "tcp", "TCP"
        UDP = "udp", "UDP"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="firewall_rules")
    position = models.PositiveIntegerField(
        default=100, validators=[MaxValueValidator(100000)], help_text="Lower runs first."
    )
    action = models.CharField(max_length=5, choices=Action.choices, default=Action.ALLOW)
    protocol = models.CharField(max_length=3, choices=Protocol.choices, default=Protocol.TCP)
    port = models.PositiveIntegerField(validators=PORT)
    port_end = models.PositiveIntegerField(
        null=True, blank=True, validators=PORT, help_text="For a range: the last port."
    )
    source = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_cidr],
        help_text="Source address or CIDR; blank for any.",
    )
    comment = models.CharField(max_length=100, blank=True, validators=[validate_comment])

    objects = PolicyQuerySet.as_manager()
    # Whoever may change the server may change its rules.
    policy = Rules(
        owner="server__owner",
        add=frozenset({ADMIN, RESELLER}),
        guard=~models.Q(server__transport="local"),
    )

    class Meta:
        ordering = ["server", "position", "id"]

    def __str__(self) -> str:
        ports = f"{self.port}-{self.port_end}" if self.port_end else str(self.port)
        return f"{self.action} {self.protocol}/{ports} from {self.source or 'any'}"

    def clean(self):
        super().clean()
        if self.port_end is not None and self.port_end < self.port:
            raise ValidationError({"port_end": "The range must end at or after its first port."})


class DriftItem(models.Model):
    """A file the panel manages that was changed or removed by hand on the server."""

    class Kind(models.TextChoices):
        CHANGED = "changed", "Changed by hand"
        MODE = "mode", "Permissions changed by hand"
        MISSING = "missing", "Removed by hand"

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="drift")
    path = models.CharField(max_length=500)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    expected_sha256 = models.CharField(max_length=64)
    actual_sha256 = models.CharField(max_length=64, blank=True)
    diff = models.TextField(blank=True)
    detected_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="server__owner", owner_may=frozenset({VIEW}), admin_may=frozenset({VIEW}))

    class Meta:
        ordering = ["server", "path"]
        constraints = [models.UniqueConstraint(fields=["server", "path"], name="drift_once")]

    def __str__(self) -> str:
        return f"{self.server}: {self.path} ({self.kind})"


class TerminalTicket(models.Model):
    """Single-use, 60-second permission to open a web terminal, bound to one session."""

    digest = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    # Only the consumer that claims a ticket reads it.
    policy = Rules(owner=None, support_may=frozenset(), admin_may=frozenset())

    def __str__(self) -> str:
        return f"ticket for {self.user} on {self.server}"


class TerminalSession(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="terminal_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    ip = models.GenericIPAddressField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)

    objects = PolicyQuerySet.as_manager()
    # The terminal is for administrators: staff read the sessions, owners do not.
    policy = Rules(owner=None, admin_may=frozenset({VIEW}))

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.user} on {self.server} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration(self):
        return (self.ended_at or timezone.now()) - self.started_at


class AppliedFile(models.Model):
    """A file the panel has written to a server and verified live: the apply engine's record
    of the server's state, so a no-op apply needs no round trip and a change only touches
    what differs. The drift check compares it with the server."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="applied_files")
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    mode = models.PositiveIntegerField()
    owner = models.CharField(max_length=32)
    group = models.CharField(max_length=32)
    service = models.CharField(max_length=64)
    unit = models.CharField(max_length=100, db_index=True)
    shard = models.CharField(max_length=2, help_text="Manifest shard on the server.")
    applied_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    # Engine state: staff read it, nobody changes it outside the engine.
    policy = Rules(owner=None, admin_may=frozenset({VIEW}))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "path"], name="applied_once")]
        indexes = [models.Index(fields=["server", "shard"])]

    def __str__(self) -> str:
        return f"{self.server}: {self.path}"


class DirtyUnit(models.Model):
    """A unit whose desired state may differ from what is live; an empty unit means all of
    them. Services add rows when they change what should be live; an apply or a publish
    takes them. A row belongs either to a server's files (``server``) or to a publisher's
    target (``target``, "publisher:key"): a nameserver is not a server, and a publisher's
    marks must never make the file engine think a server's files changed."""

    server = models.ForeignKey(
        Server, null=True, blank=True, on_delete=models.CASCADE, related_name="dirty_units"
    )
    target = models.CharField(max_length=200, blank=True, db_index=True)
    unit = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None, admin_may=frozenset({VIEW}))

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(server__isnull=False, target="")
                | (models.Q(server__isnull=True) & ~models.Q(target="")),
                name="dirty_server_or_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.server or self.target}: {self.unit or 'everything'}"
