"""Websites: the part the apply engine needs now (domain, server, vhost, typed options). The
websites issue adds PHP pools, apps, certificates, databases and backups on top."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.policy import OwnedQuerySet
from websites.validators import (
    validate_domain,
    validate_domain_list,
    validate_nginx_directives,
    validate_site_options,
)


class Website(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        FAILED = "failed", "Failed"

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
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain

    @property
    def unit(self) -> str:
        return f"website:{self.uuid.hex}"

    @property
    def names(self) -> list[str]:
        """The names the site answers to: its domain, then its aliases."""
        return [self.domain, *self.aliases.split()]

    def clean(self) -> None:
        """The checks that need the whole site: options against its names and server, raw
        directives against its directory, upstreams and options."""
        super().clean()
        from websites.checks import check_site

        check_site(self)
