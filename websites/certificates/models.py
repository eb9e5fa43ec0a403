"""TLS certificates of websites and the panel's ACME account.

A site has at most one certificate (issued by ACME or uploaded). Its private key is stored
encrypted and written to the server only by the apply engine, as a file of mode 0600.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField
from core.policy import ADMIN, VIEW, Rules


class AcmeAccount(models.Model):
    """One account per panel and ACME directory; its key is encrypted at rest."""

    policy = Rules(
        owner=None, support_may=frozenset(), admin_may=frozenset({VIEW}), add=frozenset()
    )

    directory = models.URLField(max_length=500, unique=True)
    uri = models.URLField(max_length=500, blank=True)
    email = models.EmailField(blank=True)
    private_key = EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.directory


class Certificate(models.Model):
    class Source(models.TextChoices):
        ACME = "acme", "ACME"
        UPLOAD = "upload", "Uploaded"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        FAILED = "failed", "Failed"

    class KeyType(models.TextChoices):
        ECDSA = "ecdsa", "ECDSA P-256"
        RSA = "rsa", "RSA 2048"

    class Challenge(models.TextChoices):
        HTTP01 = "http-01", "HTTP-01 (a file served by the site)"
        DNS01 = "dns-01", "DNS-01 (a TXT record in a zone the panel serves)"

    # The site's owner (and its reseller) sees and renews it; administrators everything.
    policy = Rules(owner="website__owner", add=frozenset({ADMIN}))

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    website = models.OneToOneField(
        "websites.Website", on_delete=models.CASCADE, related_name="certificate"
    )
    domains = models.TextField(help_text="The names the certificate covers, separated by spaces.")
    source = models.CharField(max_length=6, choices=Source.choices, default=Source.ACME)
    key_type = models.CharField(max_length=5, choices=KeyType.choices, default=KeyType.ECDSA)
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.PENDING)
    challenge = models.CharField(max_length=7, choices=Challenge.choices, default=Challenge.HTTP01)
    # Adds *.DOMAIN to the order (only through DNS-01: ACME validates wildcards by DNS).
    wildcard = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    private_key = EncryptedTextField(blank=True)
    fullchain = models.TextField(blank=True, help_text="The certificate, then its chain (PEM).")
    fingerprint = models.CharField(max_length=64, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    # True once the key and chain files are live on the server: only then does the vhost
    # name them (nginx refuses a configuration whose certificate file is missing).
    installed = models.BooleanField(default=False)
    # While an upload replaces a live certificate: the live one (JSON of STASHED, the key
    # with it, hence encrypted), put back if the server refuses the upload.
    replaced = EncryptedTextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    STASHED = (
        "private_key",
        "fullchain",
        "fingerprint",
        "not_before",
        "not_after",
        "domains",
        "source",
        "key_type",
    )

    class Meta:
        ordering = ["website__domain"]

    def __str__(self) -> str:
        return f"certificate of {self.website_id and self.website.domain}"

    @property
    def unit(self) -> str:
        return f"certificate:{self.uuid.hex}"

    def stash_live(self) -> None:
        """Keep the live certificate's values before an upload overwrites them (once: while
        an upload is pending, the live one is still the one stashed first)."""
        if not self.installed or not self.fullchain or self.replaced:
            return
        values = {name: getattr(self, name) for name in self.STASHED}
        for name in ("not_before", "not_after"):
            values[name] = values[name].isoformat() if values[name] else None
        self.replaced = json.dumps(values)

    def stashed(self) -> dict:
        """The values ``stash_live`` kept, ready for ``update(**...)``."""
        values = json.loads(self.replaced)
        for name in ("not_before", "not_after"):
            values[name] = dt.datetime.fromisoformat(values[name]) if values[name] else None
        return values

    @property
    def names(self) -> list[str]:
        return self.domains.split()

    @property
    def days_left(self) -> int | None:
        if self.not_after is None:
            return None
        return (self.not_after - timezone.now()).days
