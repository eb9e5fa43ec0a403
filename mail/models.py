"""Mail: domains a customer receives mail for on one of the provider's servers, their
mailboxes (Dovecot, passwords kept as SHA512-CRYPT hashes only) and aliases/forwarders
(Postfix virtual aliases). Rows are the desired state; the apply engine (mail/apply.py)
makes the server's Postfix maps and Dovecot users match, and ``status`` says how that went.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField
from core.policy import ADMIN, CHANGE, CUSTOMER, DELETE, RESELLER, VIEW, PolicyQuerySet, Rules
from mail.validators import validate_password_hash


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    FAILED = "failed", "Failed"


MAPS_UNIT = "mail:maps"
CONFIG_UNIT = "mail:config"  # main.cf, master.cf, dovecot.conf, opendkim.conf (mail/config.py)


class MailDomain(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="mail_domains"
    )
    server = models.ForeignKey(
        "servers.Server", on_delete=models.PROTECT, related_name="mail_domains"
    )
    domain = models.CharField(
        max_length=253, unique=True, help_text="Such as example.com (IDN allowed)."
    )
    suspended = models.BooleanField(
        default=False, help_text="Suspended: no mail is accepted and nobody logs in."
    )
    # Sender rules for mail to the domain (mail/conf/panel-policy.py): addresses or domains,
    # one per line; the allow list wins over the deny list.
    spam_allow = models.TextField(blank=True, help_text="Senders always accepted.")
    spam_deny = models.TextField(blank=True, help_text="Senders refused (addresses or domains).")
    # The last DNS check of the records it needs (mail/dnscheck.py): rows with a state each.
    dns_check = models.JSONField(default=list, blank=True, editable=False)
    dns_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    catch_all = models.CharField(
        max_length=320,
        blank=True,
        help_text="Mail to any address of the domain without a mailbox or alias goes here "
        "(empty: such mail is refused).",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    # DKIM (mail/dkim.py): the private key encrypted at rest, the public one for its record.
    dkim_selector = models.CharField(max_length=31, default="panel", editable=False)
    dkim_private_key = EncryptedTextField(blank=True, editable=False)
    dkim_public_key = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner_may=frozenset({VIEW, CHANGE, DELETE}),
        add=frozenset({ADMIN, RESELLER, CUSTOMER}),
    )

    class Meta:
        ordering = ["domain"]
        verbose_name = "mail domain"

    def __str__(self) -> str:
        return self.domain

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("mail-domain", kwargs={"uuid": self.uuid})

    @property
    def unit(self) -> str:
        return f"maildomain:{self.uuid}"

    @property
    def display_name(self) -> str:
        from websites.names import to_unicode

        return to_unicode(self.domain)


CHILD = Rules(
    owner="domain__owner",
    owner_may=frozenset({VIEW, CHANGE, DELETE}),
    add=frozenset({ADMIN, RESELLER, CUSTOMER}),
)


class Mailbox(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    domain = models.ForeignKey(MailDomain, on_delete=models.CASCADE, related_name="mailboxes")
    local_part = models.CharField(max_length=64)
    # Only the salted hash, as Dovecot's passwd-file reads it; the password is never kept.
    password_hash = models.CharField(max_length=200, validators=[validate_password_hash])
    quota_mb = models.PositiveIntegerField(
        "quota (MB)",
        default=1024,
        validators=[MinValueValidator(1), MaxValueValidator(1024 * 1024)],
    )
    suspended = models.BooleanField(
        default=False, help_text="Suspended: it refuses logins and receives no mail."
    )
    # Dunning's own hold (an unpaid invoice), apart from ``suspended`` which the owner may
    # change: set and lifted only by billing, rendered like a suspension.
    billing_hold = models.BooleanField(
        default=False,
        editable=False,
        help_text="Held for an unpaid invoice: refuses logins and mail until it is paid.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    password_changed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    send_limit_per_hour = models.PositiveIntegerField(
        "sending limit (recipients an hour)",
        default=300,
        validators=[MaxValueValidator(100000)],
        help_text="Above it, its mail is held for staff and an alert raised (0: no limit).",
    )
    autoreply = models.BooleanField(
        "auto-responder", default=False, help_text="Answer mail once a day per sender."
    )
    autoreply_subject = models.CharField(max_length=200, blank=True)
    autoreply_body = models.TextField(max_length=5000, blank=True)
    # The auto-responder's window, both days included, by the mail server's clock (sieve's
    # currentdate); empty: no bound.
    autoreply_start = models.DateField("reply from", null=True, blank=True)
    autoreply_end = models.DateField("reply until", null=True, blank=True)
    # Storage in KiB as Dovecot's quota plugin last counted it (mail/queue.py read_usage).
    used_kb = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = PolicyQuerySet.as_manager()
    policy = CHILD

    class Meta:
        ordering = ["domain", "local_part"]
        verbose_name_plural = "mailboxes"
        constraints = [
            models.UniqueConstraint(fields=["domain", "local_part"], name="mailbox_once")
        ]

    def __str__(self) -> str:
        return self.address

    def get_absolute_url(self) -> str:
        return self.domain.get_absolute_url()

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain.domain}"

    @property
    def owner(self):
        return self.domain.owner

    @property
    def refused(self) -> bool:
        """Logins and mail refused: suspended (owner or staff) or held for an unpaid invoice."""
        return self.suspended or self.billing_hold

    @property
    def used_percent(self) -> int | None:
        if self.used_kb is None or not self.quota_mb:
            return None
        return min(999, round(self.used_kb * 100 / (self.quota_mb * 1024)))


class MailAlias(models.Model):
    """An address that delivers to others: mailboxes of the panel (an alias) or addresses
    elsewhere (a forwarder), one per line."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    domain = models.ForeignKey(MailDomain, on_delete=models.CASCADE, related_name="aliases")
    local_part = models.CharField(max_length=64)
    destinations = models.TextField(help_text="Addresses, one per line.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = CHILD

    class Meta:
        ordering = ["domain", "local_part"]
        verbose_name = "mail alias"
        verbose_name_plural = "mail aliases"
        constraints = [
            models.UniqueConstraint(fields=["domain", "local_part"], name="mail_alias_once")
        ]

    def __str__(self) -> str:
        return self.address

    def get_absolute_url(self) -> str:
        return self.domain.get_absolute_url()

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain.domain}"

    @property
    def owner(self):
        return self.domain.owner

    @property
    def destination_list(self) -> list[str]:
        return [d for d in self.destinations.splitlines() if d]

    @property
    def is_forwarder(self) -> bool:
        """True when some destination is outside the panel's mail domains on that server."""
        own = f"@{self.domain.domain}"
        return any(not d.endswith(own) for d in self.destination_list)


class MailServerState(models.Model):
    """What was last read from a mail server: its queue (``postqueue -j``, at most 500
    messages kept; ``queue_total`` counts all). Shown to those who may apply to it."""

    server = models.OneToOneField(
        "servers.Server", on_delete=models.CASCADE, related_name="mail_state"
    )
    queue = models.JSONField(default=list, blank=True)
    queue_total = models.PositiveIntegerField(default=0)
    queue_read_at = models.DateTimeField(null=True, blank=True)

    objects = PolicyQuerySet.as_manager()
    # Read-only rows: those who own the server (its provider) and administrators see them.
    policy = Rules(owner="server__owner", owner_may=frozenset({VIEW}), admin_may=frozenset({VIEW}))

    def __str__(self) -> str:
        return f"mail state of {self.server_id}"
