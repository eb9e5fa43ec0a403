"""Websites: the part the apply engine needs now (domain, server, vhost). The websites issue
adds PHP pools, apps, certificates, databases and backups on top."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.policy import OwnedQuerySet
from websites.validators import validate_domain, validate_domain_list, validate_nginx_directives


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
    custom_directives = models.TextField(
        blank=True,
        validators=[validate_nginx_directives],
        help_text="Extra nginx directives inside this site's server block.",
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
