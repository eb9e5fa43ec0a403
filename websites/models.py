"""Websites (domain, server, kind, typed options, status) and the hosting plans that limit
what their owners may have (websites/plans.py holds the checks)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField
from core.policy import ADMIN, CHANGE, CUSTOMER, DELETE, RESELLER, VIEW, OwnedQuerySet, Rules
from websites.validators import (
    validate_domain,
    validate_domain_list,
    validate_nginx_directives,
    validate_site_options,
)

# The kinds of site a plan may allow.
SITE_KINDS = ("static", "php", "proxy", "node", "python")
APP_KINDS = ("node", "python")


def validate_php_version(value: str) -> None:
    import re

    if value and not re.fullmatch(r"\d\.\d{1,2}", value):
        raise ValidationError(f"{value!r} is not a PHP version like 8.2.")


def validate_php_versions(value: str) -> None:
    from websites.plans import parse_words

    parse_words(value, r"\d+\.\d+", "PHP version")


def validate_kinds(value: str) -> None:
    from websites.plans import parse_words

    for kind in parse_words(value, r"[a-z]+", "site kind"):
        if kind not in SITE_KINDS:
            raise ValidationError(f"{kind!r} is not a site kind ({', '.join(SITE_KINDS)}).")


class Website(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        FAILED = "failed", "Failed"
        DELETING = "deleting", "Being deleted"

    class Kind(models.TextChoices):
        STATIC = "static", "Static files"
        PHP = "php", "PHP"
        PROXY = "proxy", "Reverse proxy"
        NODE = "node", "Node.js app"
        PYTHON = "python", "Python app (WSGI/ASGI)"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    domain = models.CharField(max_length=253, unique=True, validators=[validate_domain])
    aliases = models.TextField(
        blank=True,
        validators=[validate_domain_list],
        help_text="More domain names, separated by spaces.",
    )
    server = models.ForeignKey("servers.Server", on_delete=models.PROTECT, related_name="websites")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="websites"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.STATIC)
    php_version = models.CharField(
        "PHP version",
        max_length=8,
        blank=True,
        validators=[validate_php_version],
        help_text="For PHP sites: one of the versions installed on the server.",
    )
    upstream = models.CharField(
        max_length=300,
        blank=True,
        help_text="For reverse proxies: http(s)://ADDRESS[:PORT] the site passes requests to.",
    )
    # App sites (node, python): a process the server's process manager runs as the
    # owner's system account, listening on 127.0.0.1:app_port (websites/appsites.py).
    start_command = models.CharField(
        max_length=500,
        blank=True,
        help_text="For app sites: the command that starts the app in its directory, e.g. "
        "node server.js (no shell: words separated by spaces).",
    )
    app_env = EncryptedTextField(
        "app environment",
        blank=True,
        default="",
        help_text="For app sites: a JSON object of environment variables (encrypted).",
    )
    app_port = models.PositiveIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="The port the app listens on (127.0.0.1), allocated per server.",
    )
    app_running = models.BooleanField(
        default=True, help_text="For app sites: whether the app should run (start/stop)."
    )
    app_state = models.CharField(
        max_length=32,
        blank=True,
        editable=False,
        help_text="The process state the process manager last reported.",
    )
    app_state_at = models.DateTimeField(null=True, blank=True, editable=False)
    suspended = models.BooleanField(
        default=False, help_text="Suspended sites answer 503 with a suspension page."
    )
    suspension_reason = models.CharField(max_length=200, blank=True)
    # Suspended by the hourly quota check (websites/quota.py), which alone lifts it again:
    # a suspension staff chose stays when usage falls back under the plan.
    suspended_for_quota = models.BooleanField(default=False, editable=False)
    options = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_site_options],
        help_text="Typed vhost options (redirects, headers, caching, proxies ...): "
        "see docs/websites.md.",
    )
    # Administrators only (websites.services): parsed and checked against an allow-list,
    # rendered from the parse (websites/directives.py).
    custom_directives = models.TextField(
        "raw nginx directives",
        blank=True,
        validators=[validate_nginx_directives],
        help_text="Administrators only: location blocks added to this site's server block, "
        "checked against an allow-list.",
    )
    admin_proxy = models.BooleanField(
        "administrator's proxy",
        default=False,
        help_text="Administrators only: this site is a proxy an administrator made, so its "
        "raw directives may name upstreams by host name (nginx resolves them; not checked).",
    )
    retired_directives = models.TextField(
        blank=True,
        editable=False,
        help_text="Raw directives the upgrade to typed options could not keep (never "
        "rendered): for an administrator to turn into options.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Where the bandwidth count stopped in the access log (websites/bandwidth.py).
    access_log_inode = models.BigIntegerField(null=True, blank=True, editable=False)
    access_log_offset = models.BigIntegerField(default=0, editable=False)

    objects = OwnedQuerySet.as_manager()
    # Customers and resellers create their own sites (within their plans, websites.plans).
    policy = Rules(add=frozenset({ADMIN, RESELLER, CUSTOMER}))

    class Meta:
        ordering = ["domain"]
        indexes = [models.Index(fields=["owner", "status"], name="websites_owner_status")]
        constraints = [
            # A port is never handed to two sites of one server (freed with the row).
            models.UniqueConstraint(fields=["server", "app_port"], name="websites_app_port"),
        ]

    def __str__(self) -> str:
        return self.domain

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("website", args=[self.uuid])

    @property
    def unit(self) -> str:
        return f"website:{self.uuid.hex}"

    @property
    def is_app(self) -> bool:
        return self.kind in APP_KINDS

    @property
    def program_name(self) -> str:
        """The app's name in the process manager (supervisord program, systemd unit)."""
        return f"panel-app-{self.uuid.hex[:16]}"

    def env_vars(self) -> dict[str, str]:
        """The app's environment variables (decrypted), names sorted."""
        from websites.appsites import parse_env

        return parse_env(self.app_env)

    @property
    def names(self) -> list[str]:
        """The names the site answers to: its domain, then its aliases."""
        return [self.domain, *self.aliases.split()]

    @property
    def domain_display(self) -> str:
        """The domain as people write it (IDNs in Unicode); stored in ASCII."""
        from websites.names import to_unicode

        return to_unicode(self.domain)

    @property
    def names_display(self) -> list[str]:
        from websites.names import to_unicode

        return [to_unicode(n) for n in self.names]

    @property
    def aliases_display(self) -> str:
        from websites.names import to_unicode

        return " ".join(to_unicode(n) for n in self.aliases.split())

    @property
    def pool_name(self) -> str:
        return f"site-{self.uuid.hex[:16]}"

    def clean(self) -> None:
        """The checks that need the whole site: options against its names and server, raw
        directives against its directory, upstreams and options."""
        super().clean()
        from websites.checks import check_site

        check_site(self)


class SystemAccount(models.Model):
    """The Linux user of one customer on one server (name = the user's account name):
    home ``<home_base>/<name>`` (root-owned, the SFTP chroot), web roots below it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        LOCKED = "locked", "Locked"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    server = models.ForeignKey(
        "servers.Server", on_delete=models.PROTECT, related_name="system_accounts"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="system_accounts"
    )
    name = models.CharField(max_length=32, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    ssh_key = models.TextField(
        "SSH public key", blank=True, help_text="One OpenSSH public key line for SFTP."
    )
    password_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    disk_used_mb = models.PositiveIntegerField(null=True, blank=True, editable=False)
    disk_measured_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OwnedQuerySet.as_manager()
    policy = Rules(owner="user", add=frozenset({ADMIN}))

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "user"], name="websites_account_server_user"),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.server}"

    @property
    def unit(self) -> str:
        return f"sftp:{self.uuid.hex}"


class Plan(models.Model):
    """A hosting plan: what a subscriber may have. Limits left empty are unlimited.

    ``owner`` None: a staff plan (administrators make them, for resellers and customers);
    a reseller's plan is for its own customers and stays within the reseller's own plan
    (websites.plans.check_within_parent)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="plans",
        help_text="The reseller that sells this plan; empty for the provider's own plans.",
    )
    disk_mb = models.PositiveIntegerField("disk (MB)", null=True, blank=True)
    bandwidth_gb = models.PositiveIntegerField("bandwidth (GB/month)", null=True, blank=True)
    websites = models.PositiveIntegerField(null=True, blank=True)
    databases = models.PositiveIntegerField(null=True, blank=True)
    mailboxes = models.PositiveIntegerField(null=True, blank=True)
    php_versions = models.CharField(
        "allowed PHP versions",
        max_length=200,
        blank=True,
        validators=[validate_php_versions],
        help_text="Versions separated by spaces (e.g. 8.2 8.3); empty allows every installed.",
    )
    kinds = models.CharField(
        "allowed site kinds",
        max_length=200,
        blank=True,
        validators=[validate_kinds],
        help_text=f"Kinds separated by spaces ({', '.join(SITE_KINDS)}); empty allows all.",
    )
    sftp_allowed = models.BooleanField("SSH/SFTP allowed", default=True)
    app_memory_mb = models.PositiveIntegerField(
        "app memory (MB)",
        default=256,
        validators=[MinValueValidator(32), MaxValueValidator(65536)],
        help_text="Memory limit of each Node.js or Python app site's process.",
    )
    # PHP-FPM limits of each site's pool (websites/apply.py renders them; numbers only).
    php_max_children = models.PositiveSmallIntegerField(
        "PHP processes per site",
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="pm.max_children of each PHP site's pool (1 to 100).",
    )
    php_memory_limit_mb = models.PositiveSmallIntegerField(
        "PHP memory limit (MB)",
        default=128,
        validators=[MinValueValidator(16), MaxValueValidator(4096)],
        help_text="memory_limit of each PHP request (16 to 4096 MB).",
    )
    php_max_execution_time = models.PositiveSmallIntegerField(
        "PHP time limit (seconds)",
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3600)],
        help_text="max_execution_time of each PHP request (1 to 3600 s).",
    )
    php_upload_max_mb = models.PositiveSmallIntegerField(
        "PHP upload size (MB)",
        default=32,
        validators=[MinValueValidator(1), MaxValueValidator(2048)],
        help_text="upload_max_filesize and post_max_size (1 to 2048 MB).",
    )
    suspend_over_quota = models.BooleanField(
        "suspend when over quota",
        default=False,
        help_text="Suspend the subscriber's sites while measured disk or this month's "
        "bandwidth is over the plan (lifted when back under).",
    )
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OwnedQuerySet.as_manager()
    # Staff plans (owner None) are reached by administrators (and read by support); a
    # reseller its own. Subscribers read theirs through websites.plans.visible_plans.
    policy = Rules(
        owner="owner",
        owner_may=frozenset({VIEW, CHANGE, DELETE}),
        add=frozenset({ADMIN, RESELLER}),
        reseller_reaches_customers=False,
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="websites_plan_owner_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    """A user's plan (one at a time). Users without one: see websites.plans."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscription"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    created_at = models.DateTimeField(default=timezone.now)

    objects = OwnedQuerySet.as_manager()
    # The subscriber reads it; its reseller (and administrators) change it (the service
    # refuses customers changing their own).
    policy = Rules(owner="user", add=frozenset({ADMIN, RESELLER}))

    class Meta:
        ordering = ["user__email"]

    def __str__(self) -> str:
        return f"{self.user} on {self.plan}"


class SiteTraffic(models.Model):
    """Bytes a site sent in one month, counted from its access log (websites/bandwidth.py)."""

    website = models.ForeignKey(Website, on_delete=models.CASCADE, related_name="traffic")
    month = models.DateField(help_text="The first day of the month.")
    bytes = models.BigIntegerField(default=0)

    objects = OwnedQuerySet.as_manager()
    # Read with the site; written only by the bandwidth count.
    policy = Rules(owner="website__owner", owner_may=frozenset({VIEW}), admin_may=None)

    class Meta:
        ordering = ["-month"]
        constraints = [
            models.UniqueConstraint(fields=["website", "month"], name="site_traffic_month")
        ]

    def __str__(self) -> str:
        return f"{self.website_id} {self.month:%Y-%m}: {self.bytes} bytes"
