"""VPS on libvirt: hypervisors (a server plus a libvirt URI), OS images, plans, SSH keys, IP
pools and their addresses, the VPSes themselves and their snapshots.

The database holds the inventory: pages and the API read it, never libvirt. Operations
(vps/tasks.py) change hypervisors through vps/libvirt_adapter.py and write back what they
found there.
"""

from __future__ import annotations

import ipaddress
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
    CUSTOMER,
    DELETE,
    RESELLER,
    VIEW,
    PolicyQuerySet,
    Rules,
)
from core.validators import validate_plain_text
from vps.validation import (
    validate_hostname,
    validate_libvirt_name,
    validate_libvirt_uri,
    validate_snapshot_name,
)

RATIO = [MinValueValidator(0.1), MaxValueValidator(64)]
# Change a VPS's expiry (lift an expiry suspension): in no role's ``*_may``, so only
# administrators (whose ``admin_may`` is everything) may; everyone else gets 404.
RENEW = "renew"


class Hypervisor(models.Model):
    """A libvirt host: one of the panel's servers plus how libvirt is reached on it.

    Capacity is what libvirt reported at the last inventory; the overcommit ratios, set by
    an administrator, say how much of it plans may take."""

    class Status(models.TextChoices):
        UNKNOWN = "unknown", "Not contacted yet"
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Unreachable"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    server = models.OneToOneField(
        "servers.Server", on_delete=models.PROTECT, related_name="hypervisor"
    )
    uri = models.CharField(
        "libvirt URI",
        max_length=300,
        validators=[validate_libvirt_uri],
        help_text="qemu:///system (the panel's host), qemu+libssh:///system or "
        "qemu+ssh:///system (through the server's SSH credentials and pinned host key), "
        "or test:///default for demonstrations.",
    )
    enabled = models.BooleanField(default=True, help_text="New VPSes may be placed here.")
    storage_pool = models.CharField(
        max_length=100, default="default", validators=[validate_libvirt_name]
    )
    network = models.CharField(
        max_length=100,
        default="default",
        blank=True,
        validators=[validate_libvirt_name],
        help_text="The libvirt network VPSes join; empty: user-mode networking (no inbound).",
    )
    cpu_ratio = models.FloatField("vCPU overcommit", default=4.0, validators=RATIO)
    memory_ratio = models.FloatField("memory overcommit", default=1.0, validators=RATIO)
    disk_ratio = models.FloatField("disk overcommit", default=1.0, validators=RATIO)
    # What libvirt reported at the last inventory.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNKNOWN)
    cpus = models.PositiveIntegerField(default=0, editable=False)
    memory_mib = models.PositiveBigIntegerField(default=0, editable=False)
    storage_gib = models.PositiveBigIntegerField(default=0, editable=False)
    storage_free_gib = models.PositiveBigIntegerField(default=0, editable=False)
    pools = models.JSONField(default=list, blank=True, editable=False)
    networks = models.JSONField(default=list, blank=True, editable=False)
    # Domains libvirt has that the panel did not create (names only).
    foreign_domains = models.JSONField(default=list, blank=True, editable=False)
    inventory_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None)

    class Meta:
        ordering = ["server__name"]

    def __str__(self) -> str:
        return self.server.name if self.server_id else self.uri

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("vps_hypervisor", args=[self.uuid])

    @property
    def lock_key(self) -> str:
        return f"hypervisor:{self.uuid.hex}"

    @property
    def is_test_driver(self) -> bool:
        return self.uri.startswith("test://")

    def room(self) -> tuple[float, float, float]:
        """vCPUs, MiB and GiB plans may still take here (after overcommit)."""
        used = self.vpses.exclude(state=Vps.State.DELETED).aggregate(
            cpus=models.Sum("vcpus"), mem=models.Sum("memory_mib"), disk=models.Sum("disk_gib")
        )
        return (
            self.cpus * self.cpu_ratio - (used["cpus"] or 0),
            self.memory_mib * self.memory_ratio - (used["mem"] or 0),
            self.storage_gib * self.disk_ratio - (used["disk"] or 0),
        )


class VpsPlan(models.Model):
    """What a VPS gets. ``owner`` None: the provider's plan; a reseller's plan is sold to its
    own customers and stays within the reseller's allowance (vps.services)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="vps_plans",
        help_text="The reseller that sells this plan; empty for the provider's own plans.",
    )
    vcpus = models.PositiveSmallIntegerField(
        "vCPUs", default=1, validators=[MinValueValidator(1), MaxValueValidator(256)]
    )
    memory_mib = models.PositiveIntegerField(
        "memory (MiB)", default=1024, validators=[MinValueValidator(64)]
    )
    disk_gib = models.PositiveIntegerField(
        "disk (GiB)", default=20, validators=[MinValueValidator(1), MaxValueValidator(65536)]
    )
    bandwidth_gib = models.PositiveIntegerField(
        "bandwidth (GiB/month)", null=True, blank=True, help_text="Empty: unmetered."
    )
    ip_count = models.PositiveSmallIntegerField(
        "IPv4 addresses", default=1, validators=[MaxValueValidator(64)]
    )
    ipv6 = models.BooleanField("an IPv6 address", default=True)
    snapshot_limit = models.PositiveSmallIntegerField(
        default=3, validators=[MaxValueValidator(100)]
    )
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    allowance_for = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="vps_allowance",
        help_text="Provider plans only: this reseller's own plans give one VPS at most this.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner="owner",
        owner_may=frozenset({VIEW, CHANGE, DELETE}),
        add=frozenset({ADMIN, RESELLER}),
        reseller_reaches_customers=False,
    )

    class Meta:
        ordering = ["price", "name"]
        verbose_name = "VPS plan"
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="vps_plan_owner_name"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("vps_plans")


class Image(models.Model):
    """An OS image the panel holds (qcow2 or raw, no backing file), checked with
    ``qemu-img info``; copied into each hypervisor's pool when first used there."""

    class Format(models.TextChoices):
        QCOW2 = "qcow2", "qcow2"
        RAW = "raw", "raw"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True, validators=[validate_plain_text])
    os_family = models.CharField(
        "OS", max_length=40, default="linux", validators=[validate_libvirt_name]
    )
    os_version = models.CharField(max_length=40, blank=True, validators=[validate_plain_text])
    default_user = models.CharField(
        max_length=32,
        default="debian",
        validators=[validate_libvirt_name],
        help_text="The user cloud-init gives the SSH keys to.",
    )
    path = models.CharField(max_length=500, editable=False)
    format = models.CharField(max_length=5, choices=Format.choices, editable=False)
    virtual_size = models.PositiveBigIntegerField(default=0, editable=False)
    file_size = models.PositiveBigIntegerField(default=0, editable=False)
    sha256 = models.CharField(max_length=64, editable=False)
    active = models.BooleanField(default=True, help_text="Offered for new VPSes.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("vps_image", args=[self.uuid])

    @property
    def volume_name(self) -> str:
        return f"panel-image-{self.sha256[:16]}.{self.format}"


class ImageCopy(models.Model):
    """An image's volume in one hypervisor's pool as the panel last left it. Only a copy
    that finished (``ready``) is used: a volume of that name found without one (a copy cut
    short by a dead libvirtd or worker, whose partial volume could not be deleted) is
    removed and copied again."""

    class State(models.TextChoices):
        COPYING = "copying", "copying"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="copies")
    hypervisor = models.ForeignKey(
        "Hypervisor", on_delete=models.CASCADE, related_name="image_copies"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.COPYING)
    message = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "hypervisor"], name="vps_image_copy_once")
        ]

    def __str__(self) -> str:
        return f"{self.image_id} on {self.hypervisor_id}: {self.state}"


class SshKey(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys"
    )
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    public_key = models.TextField(help_text="One line: ssh-ed25519 AAAA... comment")
    fingerprint = models.CharField(max_length=80, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner_may=frozenset({VIEW, CHANGE, DELETE}),
        add=frozenset({ADMIN, RESELLER, CUSTOMER}),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "SSH key"
        constraints = [
            models.UniqueConstraint(fields=["owner", "fingerprint"], name="vps_sshkey_once")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"


class IpPool(models.Model):
    """Addresses a hypervisor's VPSes get: ``first``..``last`` inside ``network``."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    hypervisor = models.ForeignKey(Hypervisor, on_delete=models.CASCADE, related_name="ip_pools")
    network = models.CharField(max_length=50, help_text="CIDR: 203.0.113.0/24 or 2001:db8::/64")
    gateway = models.GenericIPAddressField()
    first = models.GenericIPAddressField()
    last = models.GenericIPAddressField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None)

    class Meta:
        ordering = ["hypervisor", "name"]
        verbose_name = "IP pool"

    def __str__(self) -> str:
        return f"{self.name} ({self.network})"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("vps_pool", args=[self.uuid])

    @property
    def version(self) -> int:
        return ipaddress.ip_network(self.network, strict=False).version

    @property
    def size(self) -> int:
        return int(ipaddress.ip_address(self.last)) - int(ipaddress.ip_address(self.first)) + 1


class Vps(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Being created"
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        PAUSED = "paused", "Suspended"
        ERROR = "error", "Error"
        SUSPENDED = "suspended", "Suspended (expired)"
        MISSING = "missing", "Missing on the hypervisor"
        DELETING = "deleting", "Being deleted"
        DELETED = "deleted", "Deleted"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    hostname = models.CharField(max_length=63, validators=[validate_hostname])
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="vpses"
    )
    plan = models.ForeignKey(VpsPlan, on_delete=models.PROTECT, related_name="vpses")
    image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="vpses"
    )
    hypervisor = models.ForeignKey(
        Hypervisor, on_delete=models.PROTECT, null=True, blank=True, related_name="vpses"
    )
    ssh_keys = models.ManyToManyField(SshKey, blank=True, related_name="vpses")
    # What the domain was given (the plan at create time): capacity counts these.
    vcpus = models.PositiveSmallIntegerField(default=1)
    memory_mib = models.PositiveIntegerField(default=1024)
    disk_gib = models.PositiveIntegerField(default=20)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    state_message = models.TextField(blank=True)
    drift = models.TextField(
        blank=True, help_text="What differs on the hypervisor from what the panel set."
    )
    vnc_port = models.IntegerField(null=True, blank=True, editable=False)
    vnc_password = EncryptedTextField(blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    inventory_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner_may=frozenset({VIEW, CHANGE, DELETE, APPLY}),
        add=frozenset({ADMIN, RESELLER, CUSTOMER}),
    )

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "VPS"
        verbose_name_plural = "VPSes"
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="vps_owner_created"),
            models.Index(fields=["hypervisor", "state"], name="vps_hypervisor_state"),
        ]

    def __str__(self) -> str:
        return self.hostname

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("vps_detail", args=[self.uuid])

    @property
    def domain_name(self) -> str:
        """The libvirt domain's name: fixed at creation, never taken from user input."""
        return f"vps-{self.uuid.hex}"

    @property
    def disk_volume(self) -> str:
        return f"{self.domain_name}-disk.qcow2"

    @property
    def seed_volume(self) -> str:
        return f"{self.domain_name}-seed.iso"

    @property
    def lock_key(self) -> str:
        return f"vps:{self.uuid.hex}"

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def console_allowed(self) -> bool:
        """Whether a console may be opened now: a running (or paused) VPS that has not
        expired; a suspended (expired) one is refused."""
        return self.state in (self.State.RUNNING, self.State.PAUSED) and not self.expired


class IpAddress(models.Model):
    """An address handed out from a pool; the row exists while a VPS holds it."""

    pool = models.ForeignKey(IpPool, on_delete=models.PROTECT, related_name="addresses")
    address = models.GenericIPAddressField(unique=True)
    vps = models.ForeignKey(Vps, on_delete=models.CASCADE, related_name="addresses")
    allocated_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="vps__owner", owner_may=frozenset({VIEW}))

    class Meta:
        ordering = ["pool", "address"]
        verbose_name = "IP address"

    def __str__(self) -> str:
        return self.address


class Snapshot(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Being taken"
        READY = "ready", "Ready"
        ERROR = "error", "Error"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vps = models.ForeignKey(Vps, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=50, validators=[validate_snapshot_name])
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner="vps__owner",
        owner_may=frozenset({VIEW, CHANGE, DELETE, APPLY}),
        add=frozenset({ADMIN, RESELLER, CUSTOMER}),
    )

    class Meta:
        ordering = ["vps", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["vps", "name"], name="vps_snapshot_once")]

    def __str__(self) -> str:
        return self.name


class VpsPlanSpan(models.Model):
    """The plan a VPS had from ``since`` until its next span (or its deletion): the history
    billing charges VPS hours by (billing.usage), so a VPS resized mid-month is billed at
    each plan for the hours it had it. A row is written in the same transaction as every
    change of ``Vps.plan``: creation (since ``created_at``), a resize, and a failed resize
    put back (vps.tasks). Rows are never changed; the plan is kept (PROTECT), not its name,
    so a renamed plan still bills at its price."""

    vps = models.ForeignKey(Vps, on_delete=models.CASCADE, related_name="plan_spans")
    plan = models.ForeignKey(VpsPlan, on_delete=models.PROTECT, related_name="vps_spans")
    since = models.DateTimeField()

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner="vps__owner", owner_may=frozenset({VIEW}), admin_may=frozenset({VIEW}))

    class Meta:
        ordering = ["vps", "since", "id"]
        verbose_name = "VPS plan span"
        indexes = [models.Index(fields=["vps", "since"], name="vps_plan_span_since")]

    def __str__(self) -> str:
        return f"{self.vps_id} {self.plan_id} since {self.since:%Y-%m-%d %H:%M}"


def check_pool_range(pool: IpPool) -> None:
    """``first``..``last`` inside ``network``, same family, gateway in the network."""
    try:
        net = ipaddress.ip_network(pool.network, strict=True)
    except ValueError as exc:
        raise ValidationError({"network": f"Not a network in CIDR form: {exc}"}) from exc
    errors = {}
    for name in ("gateway", "first", "last"):
        try:
            addr = ipaddress.ip_address(getattr(pool, name) or "")
        except ValueError:
            errors[name] = ["Not an IP address."]
            continue
        if addr not in net:
            errors[name] = [f"Not inside {net}."]
        setattr(pool, name, str(addr))
    if not errors and ipaddress.ip_address(pool.first) > ipaddress.ip_address(pool.last):
        errors["last"] = ["The range ends before it starts."]
    if errors:
        raise ValidationError(errors)
    pool.network = str(net)


# --- Statistics (vps/stats.py; docs/vps.md, "Statistics") --------------------------------

# Whoever may see the VPS may see its figures; nobody edits them.
_READ_WITH_VPS = Rules(owner="vps__owner", owner_may=frozenset({VIEW}), admin_may=None)


class HypervisorStats(models.Model):
    """A hypervisor's statistics state between rounds: every domain's counters of the last
    round (for CPU % and rates), and whether the last rounds reached it."""

    hypervisor = models.OneToOneField(Hypervisor, on_delete=models.CASCADE, related_name="stats")
    counters = models.JSONField(default=dict, blank=True)  # domain name -> counters
    last_round_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0, help_text="Failed rounds in a row.")
    last_error = models.TextField(blank=True)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None)

    def __str__(self) -> str:
        return f"statistics of {self.hypervisor_id}"


class VpsSample(models.Model):
    """One round's figures of one VPS (raw, kept 48 hours): ``values`` is
    ``{"cpu": 12.5, "mem_used": ..., "net_rx": ...}``."""

    vps = models.ForeignKey(Vps, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    values = models.JSONField(default=dict)

    objects = PolicyQuerySet.as_manager()
    policy = _READ_WITH_VPS

    class Meta:
        indexes = [models.Index(fields=["vps", "at"]), models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.vps_id} at {self.at:%Y-%m-%d %H:%M:%S}"


class VpsRollup(models.Model):
    """min/avg/max per metric over ``step`` seconds from ``start`` (5 minutes kept 30 days,
    an hour kept a year): ``values`` is ``{"cpu": [min, avg, max], ...}``; ``count`` how
    many samples it covers."""

    STEP = FIVE_MINUTES = 300
    HOUR = 3600

    vps = models.ForeignKey(Vps, on_delete=models.CASCADE, related_name="+", db_index=False)
    step = models.PositiveIntegerField(default=FIVE_MINUTES)
    start = models.DateTimeField()
    count = models.PositiveIntegerField()
    values = models.JSONField(default=dict)

    objects = PolicyQuerySet.as_manager()
    policy = _READ_WITH_VPS

    class Meta:
        # Indexed by the unique (vps, step, start), as monitoring's Rollup by server.
        constraints = [
            models.UniqueConstraint(fields=["vps", "step", "start"], name="vps_rollup_once")
        ]
        indexes = [models.Index(fields=["step", "start"])]

    def __str__(self) -> str:
        return f"{self.vps_id} {self.step}s at {self.start:%Y-%m-%d %H:%M}"


# --- Console (vps/console.py; docs/vps.md, "Console") ------------------------------------


class ConsoleTicket(models.Model):
    """Single-use, 60-second permission to open one VPS's serial console or VNC screen,
    bound to the browser session that asked for it. Only the consumer claiming it reads it."""

    class Kind(models.TextChoices):
        SERIAL = "serial", "Serial console"
        VNC = "vnc", "VNC"

    digest = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    vps = models.ForeignKey(Vps, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=6, choices=Kind.choices)
    session_key = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    policy = Rules(owner=None, support_may=frozenset(), admin_may=frozenset())

    def __str__(self) -> str:
        return f"{self.kind} ticket for {self.user} on {self.vps}"
