"""Billing: what customers used, what it costs, invoices, credit notes and payments.

``UsageRecord`` rows are collected per account and period from the other apps' data
(billing.usage), rated with the plans' prices and the customer's country's ``TaxRate``
(billing.rating), and billed by ``Invoice``/``InvoiceLine`` (billing.services). Numbers are
gapless per issuer (the panel, or a reseller for its customers) and series (invoices,
credit notes): an ``InvoiceSequence`` row locked while a number is taken. An issued
invoice is immutable (``Invoice.save`` refuses changes to what it says); corrections are
credit notes. ``Payment`` rows record money received (manual now, Stripe later: the
``method``/``external_id`` pair and ``BillingProfile.stripe_customer_id`` leave room for it).
See docs/billing.md.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from billing.rules import INVOICE_PART_RULES, STAFF_RECORDS, read_only_rules
from core.policy import (
    ADMIN,
    BILLING,
    CHANGE,
    DELETE,
    VIEW,
    PolicyQuerySet,
    Rules,
)
from core.validators import validate_multiline_text, validate_plain_text

# Policy actions on invoices (named once, asked through core.policy like every action).
ISSUE = "issue"
VOID = "void"
CREDIT = "credit"
RECORD_PAYMENT = "record_payment"
SEND = "send"
INVOICE_ACTIONS = frozenset({VIEW, ISSUE, VOID, CREDIT, RECORD_PAYMENT, SEND})
# What the reseller that issued an invoice may do with it (see Invoice.policy).
ISSUER_ACTIONS = frozenset({VIEW, RECORD_PAYMENT, CREDIT, SEND})


ZERO = Decimal("0.00")
# A negative price would put negative lines on invoices.
NOT_NEGATIVE = MinValueValidator(ZERO, "A price cannot be negative.")
MONEY = {"max_digits": 14, "decimal_places": 2, "default": ZERO}


# Amounts are kept in hundredths (MONEY) and charged in cents: currencies whose minor unit
# is not the hundredth (ISO 4217 exponent 0 or 3), and those Stripe takes only in whole units
# written as hundredths (ISK, UGX), would be charged a hundred times too much or a tenth.
_NOT_IN_HUNDREDTHS = """
    BHD BIF CLF CLP DJF GNF IQD ISK JOD JPY KMF KRW KWD LYD MGA OMR PYG RWF TND UGX UYI UYW
    VND VUV XAF XOF XPF
"""
UNSUPPORTED_CURRENCIES = frozenset(_NOT_IN_HUNDREDTHS.split())


def validate_currency(value: str) -> None:
    if not re.fullmatch(r"[A-Z]{3}", value or ""):
        raise ValidationError("An ISO 4217 currency code in capitals, e.g. EUR.")
    if value in UNSUPPORTED_CURRENCIES:
        raise ValidationError(
            f"{value} has no cents (or has thousandths); the panel bills currencies in "
            "hundredths only."
        )


# ISO 3166-1 alpha-2, the 249 officially assigned codes: a made-up code (XX) would match
# no TaxRate and be billed without tax.
_ISO_3166 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN
    BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL
    GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM
    JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
    NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD
    SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
ISO_COUNTRIES = frozenset(_ISO_3166.split())


def validate_country(value: str) -> None:
    if value not in ISO_COUNTRIES:
        raise ValidationError("An ISO 3166 two-letter country code in capitals, e.g. DE.")


def validate_day_list(value: str) -> None:
    """Days after the due date, separated by spaces: "3 7 14"."""
    parts = (value or "").split()
    if not all(re.fullmatch(r"[0-9]{1,3}", p) for p in parts) or len(parts) > 10:
        raise ValidationError("Up to ten whole numbers of days separated by spaces, e.g. 3 7 14.")


class Period(models.TextChoices):
    MONTHLY = "monthly", "Monthly"


class BillingSettings(models.Model):
    """How an issuer bills: the panel's own row (``issuer`` empty) and optionally one per
    reseller (missing values: the panel's). Dunning reads ``reminder_days`` and
    ``suspend_after_days``."""

    issuer = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="billing_settings",
        help_text="The reseller these settings are for; empty for the panel's own.",
    )
    currency = models.CharField(max_length=3, default="EUR", validators=[validate_currency])
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTHLY)
    due_days = models.PositiveSmallIntegerField(
        default=14, validators=[MaxValueValidator(365)], help_text="Days from issue to due."
    )
    reminder_days = models.CharField(
        max_length=60,
        default="3 7 14",
        blank=True,
        validators=[validate_day_list],
        help_text="Send a reminder this many days after the due date (separated by spaces).",
    )
    suspend_after_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=21,
        validators=[MaxValueValidator(365)],
        help_text="Suspend the customer's services this many days after the due date "
        "(empty: never).",
    )
    country = models.CharField(
        max_length=2,
        default="DE",
        validators=[validate_country],
        help_text="The issuer's country: its tax rate applies to customers without one.",
    )
    legal_name = models.CharField(max_length=200, blank=True, validators=[validate_plain_text])
    address = models.TextField(blank=True, validators=[validate_multiline_text])
    tax_id = models.CharField(max_length=40, blank=True, validators=[validate_plain_text])
    invoice_prefix = models.CharField(
        max_length=12,
        default="INV-",
        validators=[validate_plain_text],
        help_text="Invoice numbers are this prefix and a gapless counter.",
    )
    credit_note_prefix = models.CharField(
        max_length=12, default="CN-", validators=[validate_plain_text]
    )
    # Prices of what plans do not include, per month (0: not charged).
    disk_gb_price = models.DecimalField(
        "price per GB of disk over the plan",
        max_digits=10,
        decimal_places=4,
        default=ZERO,
        validators=[NOT_NEGATIVE],
    )
    bandwidth_gb_price = models.DecimalField(
        "price per GB of bandwidth over the plan",
        max_digits=10,
        decimal_places=4,
        default=ZERO,
        validators=[NOT_NEGATIVE],
    )
    extra_ip_price = models.DecimalField(
        "price per extra IP address",
        max_digits=10,
        decimal_places=4,
        default=ZERO,
        validators=[NOT_NEGATIVE],
    )
    updated_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    # A reseller reads and changes its own (it issues its customers' invoices); the
    # panel's row (no issuer) is staff's. An issuer, not an owner: customers never have
    # settings, so the model-level question (the settings tab) is false for them.
    policy = Rules(
        owner=None,
        issuer="issuer",
        issuer_may=frozenset({VIEW, CHANGE}),
        billing_may=frozenset({VIEW, CHANGE}),
        add=frozenset({ADMIN, BILLING}),
    )

    class Meta:
        verbose_name = "billing settings"
        verbose_name_plural = "billing settings"
        constraints = [
            # One panel row: NULL issuers are not unique by themselves.
            models.UniqueConstraint(
                Coalesce("issuer", Value(0)), name="billing_settings_one_per_issuer"
            )
        ]

    def __str__(self) -> str:
        return f"billing settings of {self.issuer or 'the panel'}"

    @property
    def reminder_day_list(self) -> list[int]:
        return sorted(int(d) for d in self.reminder_days.split())


class TaxRate(models.Model):
    """The rate charged to customers in one country (customers without a country: the
    issuer's)."""

    country = models.CharField(max_length=2, unique=True, validators=[validate_country])
    name = models.CharField(max_length=60, default="VAT", validators=[validate_plain_text])
    rate = models.DecimalField(
        "rate (%)",
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
    )
    updated_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner=None,
        billing_may=frozenset({VIEW, CHANGE, DELETE}),
        add=frozenset({ADMIN, BILLING}),
    )

    class Meta:
        ordering = ["country"]

    def __str__(self) -> str:
        return f"{self.country} {self.name} {self.rate}%"

    def get_absolute_url(self) -> str:
        return reverse("billing_tax_rate", kwargs={"pk": self.pk})


class BillingProfile(models.Model):
    """Who an account's invoices are addressed to, and its payment provider's ids."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="billing_profile"
    )
    legal_name = models.CharField(max_length=200, blank=True, validators=[validate_plain_text])
    address = models.TextField(blank=True, validators=[validate_multiline_text])
    country = models.CharField(max_length=2, blank=True, validators=[validate_country])
    tax_id = models.CharField(max_length=40, blank=True, validators=[validate_plain_text])
    invoice_email = models.EmailField(
        blank=True, help_text="Where invoices are sent (empty: the account's email)."
    )
    # Payment providers (the pay helper's Stripe integration): set by services only.
    stripe_customer_id = models.CharField(max_length=64, blank=True, editable=False)
    stripe_payment_method_id = models.CharField(max_length=64, blank=True, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    # The customer's own (its reseller bills it with these details but never edits them).
    policy = Rules(
        owner="user",
        owner_may=frozenset({VIEW, CHANGE}),
        billing_may=frozenset({VIEW}),
        add=frozenset({ADMIN}),
        reseller_reaches_customers=False,
    )

    class Meta:
        ordering = ["user__email"]

    def __str__(self) -> str:
        return f"billing profile of {self.user}"


class UsageKind(models.TextChoices):
    WEBSITE_PLAN = "website_plan", "Hosting plan"
    DISK_GB = "disk_gb", "Disk (GB)"
    BANDWIDTH_GB = "bandwidth_gb", "Bandwidth (GB)"
    VPS_HOURS = "vps_hours", "VPS hours"
    MAILBOXES = "mailboxes", "Mailboxes"
    DATABASES = "databases", "Databases"
    EXTRA_IPS = "extra_ips", "Extra IP addresses"


class UsageRecord(models.Model):
    """What one account used of one kind in one period, from one source object (a VPS, a
    hosting subscription). Collection is idempotent: the row for (account, period, kind,
    source, plan) is written again with the new quantity until it is billed (``line`` set)."""

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="usage_records"
    )
    period_start = models.DateField()
    period_end = models.DateField(help_text="The first day after the period.")
    kind = models.CharField(max_length=16, choices=UsageKind.choices)
    quantity = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    # Included in the plan (billed at 0); the rest at ``unit_price``.
    included = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    source_type = models.CharField(max_length=40, blank=True, help_text="e.g. vps.vps")
    source_id = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=200, blank=True)
    plan_type = models.CharField(max_length=40, blank=True, help_text="e.g. vps.vpsplan")
    plan_id = models.BigIntegerField(null=True, blank=True)
    # Set by rating (billing.rating): the price per unit and the amount before tax.
    unit_price = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    line = models.ForeignKey(
        "InvoiceLine",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage_records",
        help_text="The invoice line that billed this usage.",
    )
    collected_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = read_only_rules("account")

    class Meta:
        ordering = ["-period_start", "kind", "id"]
        constraints = [
            # Per plan too: a VPS resized in the period has a record per plan it had
            # (billing.usage). No plan counts as 0, so plan-less rows stay unique.
            models.UniqueConstraint(
                "account", "period_start", "kind", "source_type", "source_id",
                Coalesce("plan_id", Value(0)),
                name="billing_usage_once_per_period",
            )
        ]  # fmt: skip
        indexes = [
            models.Index(fields=["period_start", "account"], name="billing_usage_period"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.period_start:%Y-%m} {self.kind} {self.quantity}"


class InvoiceSequence(models.Model):
    """A gapless counter: one row per issuer and series, locked (select_for_update) while a
    number is taken in the transaction that issues the invoice."""

    class Series(models.TextChoices):
        INVOICE = "invoice", "Invoices"
        CREDIT_NOTE = "credit_note", "Credit notes"

    issuer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoice_sequences",
    )
    series = models.CharField(max_length=12, choices=Series.choices)
    # The key (issuer id or "panel", series) that is unique, since NULL issuers are not.
    key = models.CharField(max_length=40, unique=True, editable=False)
    last = models.PositiveBigIntegerField(default=0)

    objects = PolicyQuerySet.as_manager()
    policy = STAFF_RECORDS

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key}: {self.last}"

    @staticmethod
    def key_for(issuer_id: int | None, series: str) -> str:
        return f"{issuer_id or 'panel'}:{series}"


class InvoiceQuerySet(PolicyQuerySet):
    def update(self, **kwargs):
        """Bulk updates may touch drafts freely, issued rows only in their mutable fields."""
        frozen = set(kwargs) - Invoice.MUTABLE_AFTER_ISSUE
        if frozen and self.exclude(state=Invoice.State.DRAFT).exists():
            raise ImmutableInvoice(f"An issued invoice cannot change: {', '.join(sorted(frozen))}.")
        # Back to draft would make an issued invoice (and its lines) editable again.
        if kwargs.get("state") == Invoice.State.DRAFT and (
            self.exclude(state=Invoice.State.DRAFT).exists()
        ):
            raise ImmutableInvoice("An issued invoice never becomes a draft again.")
        if (
            "state" in kwargs
            and kwargs["state"] != Invoice.State.VOID
            and (self.filter(state=Invoice.State.VOID).exists())
        ):
            raise ImmutableInvoice("A void invoice stays void (issue a new one).")
        return super().update(**kwargs)

    def delete(self):
        if self.exclude(state=Invoice.State.DRAFT).exists():
            raise ImmutableInvoice("An issued invoice is never deleted (void or credit it).")
        return super().delete()


class ImmutableInvoice(ValidationError):
    """An issued invoice (or its lines) was about to change what it says."""


class Invoice(models.Model):
    """An invoice or a credit note (``kind``), issued by the panel or by the customer's
    reseller. Drafts change freely; once issued only its payment state moves."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        ISSUED = "issued", "Issued"
        PAID = "paid", "Paid"
        VOID = "void", "Void"

    # What may still change once issued (payment, delivery, dunning, voiding).
    MUTABLE_AFTER_ISSUE = frozenset(
        {
            "state",
            "amount_paid",
            "paid_at",
            "voided_at",
            "void_reason",
            "emailed_at",
            "reminders_sent",
            "last_reminder_at",
            "credited_total",
        }
    )

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    state = models.CharField(max_length=8, choices=State.choices, default=State.DRAFT)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="invoices"
    )
    issuer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="issued_invoices",
        help_text="The reseller that bills this customer; empty: the panel.",
    )
    # Set at issue: the sequence and the number it gave ("INV-000042").
    sequence = models.ForeignKey(
        InvoiceSequence, null=True, blank=True, on_delete=models.PROTECT, editable=False
    )
    seq = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    number = models.CharField(max_length=40, blank=True, editable=False)
    credits = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credit_notes",
        help_text="Credit notes: the invoice this corrects.",
    )
    currency = models.CharField(max_length=3, validators=[validate_currency])
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    subtotal = models.DecimalField(**MONEY)
    tax_total = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    tax_rate = models.DecimalField(
        "tax rate (%)", max_digits=5, decimal_places=2, default=Decimal("0")
    )
    tax_name = models.CharField(max_length=60, blank=True)
    tax_country = models.CharField(max_length=2, blank=True)
    # Who it is from and to, as printed (copied at issue: later edits do not change it).
    bill_from = models.JSONField(default=dict, blank=True)
    bill_to = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True, validators=[validate_multiline_text])
    created_at = models.DateTimeField(default=timezone.now)
    issued_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    # Mutable after issue.
    amount_paid = models.DecimalField(**MONEY)
    credited_total = models.DecimalField(**MONEY)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=200, blank=True, validators=[validate_plain_text])
    emailed_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    last_reminder_at = models.DateTimeField(null=True, blank=True)

    objects = InvoiceQuerySet.as_manager()
    # Customers read theirs; support reads all; the billing role reads and works every
    # invoice; changes go through billing.services. A reseller reads and works the invoices
    # it issued (payments received, credit notes, sending), not its customers' others: a
    # customer moved from another reseller (or from the panel) does not show it the earlier
    # issuer's invoices and prices. Not VOID: an invoice the
    # customer has received is corrected by a credit note (a document of its own), and a
    # void hands the usage back to the panel's billing run; staff void on request.
    policy = Rules(
        owner="customer",
        owner_may=frozenset({VIEW}),
        billing_may=INVOICE_ACTIONS,
        add=frozenset({ADMIN, BILLING}),
        issuer="issuer",
        issuer_may=ISSUER_ACTIONS,
        reseller_reaches_customers=False,
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["sequence", "seq"], name="billing_invoice_number"),
            models.UniqueConstraint(
                fields=["customer", "period_start", "kind"],
                condition=models.Q(kind="invoice") & ~models.Q(state="void"),
                name="billing_invoice_once_per_period",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "-created_at"], name="billing_invoice_customer"),
            models.Index(fields=["state", "due_date"], name="billing_invoice_state_due"),
            models.Index(fields=["-created_at", "-id"], name="billing_invoice_created"),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.uuid.hex[:8]}"

    def save(self, *args, **kwargs):
        # The guard: what an issued invoice says never changes, whoever calls save().
        if self.pk:
            stored = type(self)._base_manager.filter(pk=self.pk).values().first()
            if stored and stored["state"] != self.State.DRAFT:
                changed = [
                    f.attname
                    for f in self._meta.concrete_fields
                    if f.attname not in self.MUTABLE_AFTER_ISSUE
                    and stored[f.attname] != getattr(self, f.attname)
                ]
                if changed:
                    raise ImmutableInvoice(
                        f"Invoice {stored['number']} is issued: {', '.join(changed)} cannot "
                        "change (issue a credit note)."
                    )
                if self.state == self.State.DRAFT:
                    raise ImmutableInvoice("An issued invoice cannot become a draft again.")
                if stored["state"] == self.State.VOID and self.state != self.State.VOID:
                    raise ImmutableInvoice("A void invoice stays void (issue a new one).")
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("billing_invoice", kwargs={"uuid": self.uuid})

    def delete(self, *args, **kwargs):
        stored = type(self)._base_manager.filter(pk=self.pk).values_list("state", flat=True)
        if self.state != self.State.DRAFT or any(s != self.State.DRAFT for s in stored):
            raise ImmutableInvoice("An issued invoice is never deleted (void or credit it).")
        return super().delete(*args, **kwargs)

    @property
    def is_draft(self) -> bool:
        return self.state == self.State.DRAFT

    @property
    def owner_id(self) -> int:
        """Whom audit entries and events about it concern: the customer."""
        return self.customer_id

    @property
    def balance(self) -> Decimal:
        return self.total - self.amount_paid - self.credited_total


class InvoiceLineQuerySet(PolicyQuerySet):
    """Bulk changes to lines as Invoice's: only on drafts (what an invoice says is fixed)."""

    def _refuse_issued(self) -> None:
        if self.exclude(invoice__state=Invoice.State.DRAFT).exists():
            raise ImmutableInvoice("The lines of an issued invoice cannot change.")

    def update(self, **kwargs):
        self._refuse_issued()
        return super().update(**kwargs)

    def delete(self):
        self._refuse_issued()
        return super().delete()

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        ids = {line.invoice_id for line in objs}
        if Invoice._base_manager.filter(pk__in=ids).exclude(state=Invoice.State.DRAFT).exists():
            raise ImmutableInvoice("The lines of an issued invoice cannot change.")
        return super().bulk_create(objs, *args, **kwargs)


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16, blank=True, help_text="A usage kind, or empty.")
    description = models.CharField(max_length=200, validators=[validate_plain_text])
    quantity = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("1"))
    unit = models.CharField(max_length=20, blank=True)
    unit_price = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    amount = models.DecimalField(**MONEY)

    objects = InvoiceLineQuerySet.as_manager()
    policy = INVOICE_PART_RULES

    class Meta:
        ordering = ["invoice", "position", "id"]

    def __str__(self) -> str:
        return self.description

    def save(self, *args, **kwargs):
        self._refuse_unless_draft()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._refuse_unless_draft()
        return super().delete(*args, **kwargs)

    def _refuse_unless_draft(self) -> None:
        state = Invoice._base_manager.filter(pk=self.invoice_id).values_list("state", flat=True)
        if state and state[0] != Invoice.State.DRAFT:
            raise ImmutableInvoice("The lines of an issued invoice cannot change.")


class Payment(models.Model):
    """Money received (or attempted) against one invoice."""

    class Method(models.TextChoices):
        MANUAL = "manual", "Manual (bank transfer, cash ...)"
        STRIPE = "stripe", "Stripe"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        REFUNDED = "refunded", "Refunded"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, validators=[validate_currency])
    method = models.CharField(max_length=10, choices=Method.choices, default=Method.MANUAL)
    external_id = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_plain_text],
        help_text="The bank reference, or the provider's id (a Stripe PaymentIntent).",
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.SUCCEEDED)
    failure_message = models.CharField(max_length=300, blank=True)
    refund_due = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=ZERO,
        help_text="Received but not owed (the invoice was paid, credited or voided before "
        "the card payment succeeded): to refund to the customer.",
    )
    note = models.CharField(max_length=200, blank=True, validators=[validate_plain_text])
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="recorded_payments",
        help_text="Who recorded it by hand; empty for payments from a provider.",
    )
    received_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = INVOICE_PART_RULES

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["method", "external_id"],
                condition=~models.Q(external_id=""),
                name="billing_payment_external_once",
            )
        ]
        indexes = [models.Index(fields=["-received_at", "-id"], name="billing_payment_received")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} for {self.invoice}"


# Stripe payments and dunning (their own module; registered with the app from here).
from billing.payment_models import (  # noqa: E402, F401
    DunningStep,
    DunningSuspension,
    PaymentCard,
    StripeAccount,
    StripeEvent,
)

# Daily usage samples (their own module; registered with the app from here).
from billing.sample_models import UsageSample, UsageSampleDay  # noqa: E402, F401
