"""DNS: nameserver groups and their nameservers (BIND over RFC 2136 + rndc, PowerDNS over its
HTTP API), zones and their records, and what each nameserver was last sent (the published
state, so a publish sends only the record sets that changed).

The panel's database is the source of truth; dns/publishers.py makes the nameservers serve it.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
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
from dns.validation import RECORD_TYPES, validate_ttl


class NameserverGroup(models.Model):
    """The nameservers that serve a zone together: one primary, any number of secondaries.
    Administrators run them; every zone names one group (the default one when not told)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True, validators=[validate_plain_text])
    is_default = models.BooleanField(
        default=False, help_text="New zones go to this group unless an administrator says."
    )
    vanity_nameservers = models.TextField(
        blank=True,
        help_text="One hostname per line (ns1.brand.example): the NS names the group's zones "
        "show instead of the nameservers' own hostnames. Each must resolve to the group's "
        "servers; the panel does not serve them.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def vanity(self) -> list[str]:
        return [h for h in self.vanity_nameservers.split() if h]


class ZoneTemplate(models.Model):
    """Records a new zone starts with, written with variables: ``{zone}`` (the zone's
    name), ``{server_ip}`` and ``{server_ipv6}`` (given at creation). Administrators keep
    them; anyone creating a zone may choose one."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True, validators=[validate_plain_text])
    records = models.JSONField(
        default=list,
        blank=True,
        help_text='A list of {"name": "www", "type": "A", "content": "{server_ip}", "ttl": null}.',
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Nameserver(models.Model):
    class Kind(models.TextChoices):
        BIND = "bind", "BIND (RFC 2136 + rndc)"
        POWERDNS = "powerdns", "PowerDNS (HTTP API)"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    group = models.ForeignKey(NameserverGroup, on_delete=models.CASCADE, related_name="nameservers")
    hostname = models.CharField(
        max_length=253,
        help_text="The public name zones list in their NS records, such as ns1.example.net.",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.BIND)
    primary = models.BooleanField(default=True)
    host = models.CharField(max_length=253, help_text="Address the panel reaches it at.")
    port = models.PositiveIntegerField(default=53)
    # BIND: TSIG key for UPDATE and AXFR; rndc control channel for addzone/delzone.
    tsig_key_name = models.CharField(max_length=100, blank=True)
    tsig_secret = EncryptedTextField(blank=True)
    rndc_port = models.PositiveIntegerField(default=953)
    rndc_secret = EncryptedTextField(blank=True)
    zone_dir = models.CharField(
        "zone file directory",
        max_length=300,
        blank=True,
        help_text="BIND: the directory (on the panel's host, or on its server when one is set) "
        "where a new zone's first file is written before rndc addzone (dynamic updates keep "
        "it afterwards).",
    )
    server = models.ForeignKey(
        "servers.Server",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="BIND on a server the panel manages: rndc runs there and zone files are "
        "written there, through the server's SSH transport (its control channel then only "
        "listens on the server itself).",
    )
    # PowerDNS: the API base URL (http://127.0.0.1:8081) and its key.
    api_url = models.CharField(max_length=300, blank=True)
    api_key = EncryptedTextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None)

    class Meta:
        ordering = ["group", "-primary", "hostname"]

    def __str__(self) -> str:
        return f"{self.hostname} ({self.get_kind_display()})"

    @property
    def lock_key(self) -> str:
        return f"nameserver:{self.uuid.hex}"

    @property
    def key(self) -> str:
        """How a publish Operation names this nameserver (no secret in it)."""
        return self.uuid.hex


class NsStatus(models.TextChoices):
    UNCHECKED = "unchecked", "Not checked yet"
    OK = "ok", "Delegated to our nameservers"
    MISMATCH = "mismatch", "NS mismatch"
    ERROR = "error", "Check failed"


class DsStatus(models.TextChoices):
    NONE = "", "No DS at the parent"
    WAITING = "waiting", "Waiting for the DS at the parent"
    OK = "ok", "Chain of trust complete"
    MISMATCH = "mismatch", "DS at the parent does not match"


class Zone(models.Model):
    NsStatus = NsStatus
    DsStatus = DsStatus

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PUBLISHED = "published", "Published"
        ERROR = "error", "Error"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(
        max_length=253, unique=True, help_text="The domain, such as example.com (IDN allowed)."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="zones"
    )
    group = models.ForeignKey(
        NameserverGroup,
        on_delete=models.PROTECT,
        related_name="zones",
        null=True,
        blank=True,
        verbose_name="nameserver group",
    )
    serial = models.PositiveBigIntegerField(default=0, editable=False)
    default_ttl = models.PositiveIntegerField(default=3600, validators=[validate_ttl])
    soa_rname = models.CharField(
        "SOA contact",
        max_length=253,
        blank=True,
        help_text="The zone's contact mailbox as a name (hostmaster.example.com); "
        "empty: hostmaster at the zone.",
    )
    soa_refresh = models.PositiveIntegerField(default=3600)
    soa_retry = models.PositiveIntegerField(default=600)
    soa_expire = models.PositiveIntegerField(default=1209600)
    soa_minimum = models.PositiveIntegerField(default=300)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    published_serial = models.PositiveBigIntegerField(default=0, editable=False)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    # NS verification (dns/nscheck.py): delegation at the parent, NS and serial at each
    # nameserver of the group.
    ns_status = models.CharField(
        "NS verification",
        max_length=10,
        choices=NsStatus.choices,
        default=NsStatus.UNCHECKED,
        editable=False,
    )
    ns_message = models.TextField(blank=True, editable=False)
    ns_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # What the last NS check found at the parent for DNSSEC (dns/nscheck.py).
    ds_status = models.CharField(
        "DNSSEC chain", max_length=10, choices=DsStatus.choices, blank=True, editable=False
    )
    # DNSSEC (dns/signing.py): signed by its nameservers (BIND dnssec-policy with inline
    # signing, PowerDNS cryptokeys); the DS records for the registrar, one per line, as the
    # last sign operation computed them from the served DNSKEYs.
    dnssec = models.BooleanField("signed (DNSSEC)", default=False, editable=False)
    ds_records = models.TextField("DS records", blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner_may=frozenset({VIEW, CHANGE, DELETE, APPLY}),
        add=frozenset({ADMIN, RESELLER, CUSTOMER}),
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("zone", args=[self.uuid])

    @property
    def unit(self) -> str:
        return f"zone:{self.name}"

    @property
    def ds_list(self) -> list[str]:
        return [line for line in self.ds_records.splitlines() if line]

    def next_serial(self, today=None) -> int:
        """Date-based (YYYYMMDDnn) and always increasing, whatever the date says."""
        today = today or timezone.now().date()
        return max(self.serial + 1, int(today.strftime("%Y%m%d")) * 100)


class Record(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    zone = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="records")
    name = models.CharField(
        max_length=253, help_text="Relative to the zone; @ for the zone itself, * for wildcards."
    )
    type = models.CharField(max_length=8, choices=[(t, t) for t in RECORD_TYPES])
    ttl = models.PositiveIntegerField(
        "TTL", null=True, blank=True, validators=[validate_ttl], help_text="Empty: the zone's."
    )
    content = models.TextField(help_text="As in a zone file: 10 mail.example.com. for MX.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner="zone__owner",
        owner_may=frozenset({VIEW, CHANGE, DELETE}),
        add=frozenset({ADMIN, RESELLER, CUSTOMER}),
    )

    class Meta:
        ordering = ["zone", "name", "type", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["zone", "name", "type", "content"], name="dns_record_once"
            )
        ]
        indexes = [models.Index(fields=["zone", "name", "type", "id"], name="dns_record_key")]

    def __str__(self) -> str:
        return f"{self.name} {self.type} {self.content[:60]}"

    def clean(self) -> None:
        if self.type not in RECORD_TYPES:
            raise ValidationError({"type": f"{self.type!r} is not a supported record type."})


class PublishedRRSet(models.Model):
    """What one nameserver was last sent, and verified to serve, for one record set: a
    digest of its TTL and records. A publish compares the desired record sets of the dirty
    units with these rows, never with a full transfer of the zone."""

    nameserver = models.ForeignKey(Nameserver, on_delete=models.CASCADE, related_name="+")
    # The zone's name, not a key: the rows outlive a deleted zone until its removal from
    # the nameserver is published.
    zone_name = models.CharField(max_length=253)
    name = models.CharField(max_length=253)
    type = models.CharField(max_length=10)
    ttl = models.PositiveIntegerField()
    records = models.JSONField(default=list)  # canonical texts, sorted

    objects = PolicyQuerySet.as_manager()
    policy = Rules(owner=None, admin_may=frozenset({VIEW}))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["nameserver", "zone_name", "name", "type"], name="dns_published_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}/{self.type}"
