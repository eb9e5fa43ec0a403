"""Payments through Stripe and dunning: the panel's Stripe account (secrets encrypted at
rest), the webhook events already handled (each once), payment methods cached from Stripe,
and the dunning steps taken and the services dunning suspended (so that paying lifts only
those, never a suspension staff chose). Imported by billing.models. See docs/billing.md.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.rules import INVOICE_PART_RULES, STAFF_RECORDS, read_only_rules
from core.fields import EncryptedTextField
from core.policy import ADMIN, CHANGE, DELETE, VIEW, PolicyQuerySet, Rules


class StripeAccount(models.Model):
    """The panel's Stripe account: one row. Keys are read by billing.stripe_client only."""

    secret_key = EncryptedTextField(
        blank=True, help_text="The secret API key (sk_live_... or sk_test_...)."
    )
    publishable_key = models.CharField(
        max_length=200, blank=True, help_text="pk_...: given to Stripe.js in the portal."
    )
    webhook_secret = EncryptedTextField(
        blank=True, help_text="The webhook endpoint's signing secret (whsec_...)."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    # Secrets: administrators only (the billing role works invoices, not the account).
    policy = Rules(owner=None, support_may=frozenset(), add=frozenset({ADMIN}))

    class Meta:
        verbose_name = "Stripe account"

    def __str__(self) -> str:
        return "Stripe account"

    @property
    def configured(self) -> bool:
        return bool(self.secret_key and self.webhook_secret)


class StripeEvent(models.Model):
    """A webhook event handled: its id is unique, so a replay changes nothing."""

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    invoice = models.ForeignKey(
        "billing.Invoice", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    result = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = STAFF_RECORDS

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class PaymentCard(models.Model):
    """A card saved with Stripe for a customer (what the list shows: never the number)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="payment_cards"
    )
    stripe_id = models.CharField(max_length=100, unique=True)
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner="user",
        owner_may=frozenset({VIEW, CHANGE, DELETE}),
        billing_may=frozenset({VIEW}),
        reseller_reaches_customers=False,
    )

    class Meta:
        ordering = ["user", "-is_default", "-created_at"]

    def __str__(self) -> str:
        return f"{self.brand} ending {self.last4}"


class DunningStep(models.Model):
    """One thing dunning did about an overdue invoice: a reminder, a suspension, a
    reactivation (shown on the invoice and in the staff dunning queue)."""

    class Kind(models.TextChoices):
        REMINDER = "reminder", "Reminder sent"
        SUSPEND = "suspend", "Services suspended"
        REACTIVATE = "reactivate", "Services reactivated"

    invoice = models.ForeignKey(
        "billing.Invoice", on_delete=models.CASCADE, related_name="dunning_steps"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    days_overdue = models.IntegerField(default=0)
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = INVOICE_PART_RULES

    class Meta:
        ordering = ["invoice", "created_at", "id"]
        constraints = [
            # A reminder for a given day is sent once, whoever runs the schedule twice.
            models.UniqueConstraint(
                fields=["invoice", "kind", "days_overdue"], name="billing_dunning_step_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.days_overdue} days)"


class DunningSuspension(models.Model):
    """A service dunning suspended for an account; lifted (``lifted_at``) once the account
    owes nothing overdue. Only these rows are ever lifted by dunning."""

    class Service(models.TextChoices):
        WEBSITE = "website", "Website"
        VPS = "vps", "VPS"
        MAILBOX = "mailbox", "Mailbox"

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dunning_suspensions"
    )
    invoice = models.ForeignKey(
        "billing.Invoice", on_delete=models.CASCADE, related_name="dunning_suspensions"
    )
    service = models.CharField(max_length=10, choices=Service.choices)
    object_id = models.BigIntegerField()
    label = models.CharField(max_length=300, blank=True)
    suspended_at = models.DateTimeField(default=timezone.now)
    lifted_at = models.DateTimeField(null=True, blank=True)

    objects = PolicyQuerySet.as_manager()
    policy = read_only_rules("account")

    class Meta:
        ordering = ["-suspended_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "object_id"],
                condition=models.Q(lifted_at__isnull=True),
                name="billing_dunning_suspended_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_service_display()} {self.label}"
