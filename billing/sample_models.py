"""Daily usage samples: what each account held of the kinds billed as an average over the
period (disk, mailboxes, databases, extra IP addresses), one reading a day, so that a month
is billed for what was held on each of its days and not for one reading at collection.
Written by billing.usage.sample_usage; imported by billing.models. See docs/billing.md.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.models import UsageKind
from billing.rules import STAFF_RECORDS, read_only_rules
from core.policy import PolicyQuerySet


class UsageSample(models.Model):
    """One account's reading of one kind on one day (GB for disk, a count for the others).
    Only readings above zero are stored: a day that was sampled (``UsageSampleDay``) and has
    no row for an account held nothing of that kind."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_samples"
    )
    kind = models.CharField(max_length=16, choices=UsageKind.choices)
    day = models.DateField()
    value = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))

    objects = PolicyQuerySet.as_manager()
    policy = read_only_rules("account")

    class Meta:
        ordering = ["-day", "account", "kind"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind", "day"], name="billing_usage_sample_once_a_day"
            )
        ]
        indexes = [models.Index(fields=["day"], name="billing_usage_sample_day")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day} {self.kind} {self.value}"


class UsageSampleDay(models.Model):
    """A day the samples were taken: the days an average is taken over (an account without
    a sample on such a day held zero), and the lock that keeps two samplers of one day from
    writing at once."""

    day = models.DateField(unique=True)
    taken_at = models.DateTimeField(default=timezone.now)
    samples = models.PositiveIntegerField(default=0)

    objects = PolicyQuerySet.as_manager()
    policy = STAFF_RECORDS

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"usage sampled {self.day}"
