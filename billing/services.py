"""Billing's state changes: issuing (in bulk per period, or one draft), credit notes,
voiding, manual payments, settings, tax rates and profiles. Each validates, writes and
audits in one transaction; emails go out on commit (billing.tasks).

Numbers: ``take_numbers`` locks the issuer's ``InvoiceSequence`` row (select_for_update)
in the transaction that issues, so concurrent issuers wait for each other and a rolled
back issue gives its numbers back: numbers are gapless per issuer and series.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import (
    CREDIT,
    ISSUE,
    RECORD_PAYMENT,
    VOID,
    ZERO,
    BillingProfile,
    BillingSettings,
    ImmutableInvoice,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    Payment,
    TaxRate,
    UsageKind,
    UsageRecord,
)
from billing.rating import money, settings_for
from billing.usage import BillingPeriod
from core import audit
from core.bulk import insert_rows, update_rows
from core.policy import ADD, CHANGE, DELETE, may
from core.services import accept_only, refuse_nul_in

SETTINGS_FIELDS = [
    "currency", "due_days", "reminder_days", "suspend_after_days", "country", "legal_name",
    "address", "tax_id", "invoice_prefix", "credit_note_prefix", "disk_gb_price",
    "bandwidth_gb_price", "extra_ip_price",
]  # fmt: skip
TAX_RATE_FIELDS = ["country", "name", "rate"]
PROFILE_FIELDS = ["legal_name", "address", "country", "tax_id", "invoice_email"]
PAYMENT_FIELDS = ["amount", "external_id", "note", "received_at"]
UNITS = {
    UsageKind.WEBSITE_PLAN: "month",
    UsageKind.VPS_HOURS: "h",
    UsageKind.DISK_GB: "GB",
    UsageKind.BANDWIDTH_GB: "GB",
    UsageKind.EXTRA_IPS: "address",
}


# Numbers ---------------------------------------------------------------------------------


def take_numbers(issuer_id: int | None, series: str, count: int) -> tuple[InvoiceSequence, int]:
    """Reserve ``count`` consecutive numbers; returns the sequence and the first. Must run
    inside the issuing transaction (the row stays locked until it commits)."""
    key = InvoiceSequence.key_for(issuer_id, series)
    try:
        with transaction.atomic():
            InvoiceSequence.objects.get_or_create(
                key=key, defaults={"issuer_id": issuer_id, "series": series}
            )
    except IntegrityError:  # another issuer made it meanwhile
        pass
    sequence = InvoiceSequence.objects.select_for_update().get(key=key)
    first = sequence.last + 1
    sequence.last += count
    InvoiceSequence.objects.filter(pk=sequence.pk).update(last=sequence.last)
    return sequence, first


def format_number(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:06d}"


# Who and where ---------------------------------------------------------------------------


def issuer_id_of(customer) -> int | None:
    """Reseller customers are invoiced by their reseller, everyone else by the panel."""
    return customer.reseller_id


def tax_for(
    country: str, rates: dict | None = None, default_country: str = ""
) -> tuple[Decimal, str]:
    """The rate of ``country``; a country without a TaxRate is charged the issuer's own
    (``default_country``'s) rate, never 0 % by default. 0 % only if neither has a rate."""
    if rates is None:
        rates = {
            r.country: (r.rate, r.name)
            for r in TaxRate.objects.filter(country__in=[country, default_country])
        }
    return rates.get(country) or rates.get(default_country) or (Decimal("0.00"), "")


def bill_from(settings: BillingSettings, issuer) -> dict:
    return {
        "name": settings.legal_name or (issuer.company or issuer.email if issuer else ""),
        "address": settings.address,
        "country": settings.country,
        "tax_id": settings.tax_id,
    }


def bill_to(customer, profile: BillingProfile | None) -> dict:
    return {
        "name": (profile.legal_name if profile else "")
        or customer.company
        or customer.name
        or customer.email,
        "email": (profile.invoice_email if profile else "") or customer.email,
        "address": profile.address if profile else "",
        "country": profile.country if profile else "",
        "tax_id": profile.tax_id if profile else "",
    }


def totals(amounts: list[Decimal], rate: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    subtotal = money(sum(amounts, ZERO))
    tax = money(subtotal * rate / 100)
    return subtotal, tax, subtotal + tax


# Issuing a period in bulk ------------------------------------------------------------------


def issue_period(
    period: BillingPeriod, *, actor=None, accounts=None, send: bool = True
) -> list[int]:
    """Invoice every account with rated, unbilled usage in ``period`` that has no invoice
    for it yet (and whose total is above zero); returns the new invoices' ids."""
    from django.contrib.auth import get_user_model

    User = get_user_model()  # noqa: N806
    records = UsageRecord.objects.filter(
        period_start=period.start, line__isnull=True, amount__isnull=False
    )
    if accounts is not None:
        records = records.filter(account__in=accounts.values("pk"))
    invoiced = Invoice.objects.filter(period_start=period.start, kind=Invoice.Kind.INVOICE).exclude(
        state=Invoice.State.VOID
    )
    records = records.exclude(account__in=invoiced.values("customer_id"))
    by_account: dict[int, list] = defaultdict(list)
    for row in records.order_by("account_id", "kind", "id").values_list(
        "pk", "account_id", "kind", "description", "quantity", "included", "unit_price", "amount"
    ):
        by_account[row[1]].append(row)
    by_account = {k: v for k, v in by_account.items() if sum((r[7] for r in v), ZERO) > ZERO}
    if not by_account:
        return []
    users = {u.pk: u for u in User.objects.filter(pk__in=list(by_account))}
    profiles = {p.user_id: p for p in BillingProfile.objects.filter(user_id__in=list(by_account))}
    rates = {r.country: (r.rate, r.name) for r in TaxRate.objects.all()}
    issuers = {u.pk: u for u in User.objects.filter(pk__in={u.reseller_id for u in users.values()})}
    cache: dict = {}
    now = timezone.now()
    invoices: list[Invoice] = []
    for account_id, rows in by_account.items():
        customer = users[account_id]
        issuer_id = issuer_id_of(customer)
        settings = settings_for(issuer_id, cache)
        profile = profiles.get(account_id)
        country = (profile.country if profile else "") or settings.country
        rate, tax_name = tax_for(country, rates, default_country=settings.country)
        subtotal, tax, total = totals([r[7] for r in rows], rate)
        invoice = Invoice(
            uuid=uuidlib.uuid4(), customer_id=account_id, issuer_id=issuer_id,
            currency=settings.currency, period_start=period.start, period_end=period.end,
            subtotal=subtotal, tax_total=tax, total=total, tax_rate=rate, tax_name=tax_name,
            tax_country=country, bill_from=bill_from(settings, issuers.get(issuer_id)),
            bill_to=bill_to(customer, profile), created_at=now,
        )  # fmt: skip
        invoice._rows, invoice._settings = rows, settings
        invoices.append(invoice)
    inv_fields = [
        "uuid", "kind", "state", "customer", "issuer", "currency", "period_start",
        "period_end", "subtotal", "tax_total", "total", "tax_rate", "tax_name", "tax_country",
        "bill_from", "bill_to", "notes", "created_at", "amount_paid", "credited_total",
        "void_reason", "reminders_sent", "number",
    ]  # fmt: skip
    with transaction.atomic():
        ids = insert_rows(
            Invoice,
            inv_fields,
            [
                [
                    i.uuid,
                    i.kind,
                    i.state,
                    i.customer_id,
                    i.issuer_id,
                    i.currency,
                    i.period_start,
                    i.period_end,
                    i.subtotal,
                    i.tax_total,
                    i.total,
                    i.tax_rate,
                    i.tax_name,
                    i.tax_country,
                    i.bill_from,
                    i.bill_to,
                    "",
                    now,
                    ZERO,
                    ZERO,
                    "",
                    0,
                    "",
                ]
                for i in invoices
            ],
            returning=True,
        )
        line_rows, line_records = [], []
        for invoice, pk in zip(invoices, ids, strict=True):
            invoice.pk = invoice.id = pk
            for position, (rec_pk, _a, kind, desc, qty, included, unit, amount) in enumerate(
                r for r in invoice._rows if r[7] > ZERO
            ):
                billed = qty - included if kind in _OVERAGE else qty
                line_rows.append(
                    [pk, position, kind, _line_text(kind, desc, included), billed,
                     UNITS.get(kind, ""), unit or ZERO, amount]
                )  # fmt: skip
                line_records.append(rec_pk)
        line_ids = insert_rows(
            InvoiceLine,
            [
                "invoice",
                "position",
                "kind",
                "description",
                "quantity",
                "unit",
                "unit_price",
                "amount",
            ],
            line_rows,
            returning=True,
        )
        record_rows = [[line_id, rec] for line_id, rec in zip(line_ids, line_records, strict=True)]
        update_rows(UsageRecord, "id", ["line"], record_rows)
        _number_and_issue(invoices, now)
        audit.record_many(
            "invoice.issue",
            invoices,
            actor=actor,
            changes=[{"number": [None, i.number], "total": [None, str(i.total)]} for i in invoices],
        )
        if send:
            _send_on_commit([i.pk for i in invoices])
    return ids


_OVERAGE = {UsageKind.DISK_GB, UsageKind.BANDWIDTH_GB}


def _line_text(kind: str, description: str, included: Decimal) -> str:
    if kind in _OVERAGE:
        return f"{description} over the {included.normalize():f} included"
    return description


def _number_and_issue(invoices: list[Invoice], now) -> None:
    """Give each new invoice its number (gapless per issuer) and issue it."""
    by_issuer: dict[int | None, list[Invoice]] = defaultdict(list)
    for invoice in invoices:
        by_issuer[invoice.issuer_id].append(invoice)
    rows = []
    for issuer_id in sorted(by_issuer, key=lambda i: i or 0):  # one lock order: no deadlock
        group = by_issuer[issuer_id]
        sequence, first = take_numbers(issuer_id, InvoiceSequence.Series.INVOICE, len(group))
        for offset, invoice in enumerate(group):
            settings = invoice._settings
            invoice.sequence_id, invoice.seq = sequence.pk, first + offset
            invoice.number = format_number(settings.invoice_prefix, invoice.seq)
            invoice.state, invoice.issued_at = Invoice.State.ISSUED, now
            invoice.due_date = (now + timedelta(days=settings.due_days)).date()
            rows.append(
                [invoice.sequence_id, invoice.seq, invoice.number, invoice.state, now,
                 invoice.due_date, invoice.pk]
            )  # fmt: skip
    update_rows(
        Invoice, "id", ["sequence", "seq", "number", "state", "issued_at", "due_date"], rows
    )


def _send_on_commit(ids: list[int]) -> None:
    from django_q.tasks import async_task

    if ids:
        transaction.on_commit(lambda: async_task("billing.tasks.send_invoices", ids))


# One invoice ---------------------------------------------------------------------------


def _require(actor, action: str, invoice: Invoice | None = None) -> None:
    """The policy decides (administrators and billing staff; the issuing reseller for
    what Invoice.policy's ``issuer_may`` allows); a service called from anywhere (API,
    portal, shell) asks it too."""
    if not may(actor, action, invoice if invoice is not None and invoice.pk else Invoice):
        raise PermissionDenied("You may not do this to invoices.")


def do_issue_invoice(
    invoice: Invoice, *, actor, send: bool = True, tax_total: Decimal | None = None
) -> Invoice:
    """Issue one draft (made by hand or left by a failed run). ``tax_total``: the tax
    exactly, instead of the rate applied to the lines (a credit note's share of the tax its
    invoice charged)."""
    _require(actor, ISSUE, invoice)
    return _issue(invoice, actor=actor, send=send, tax_total=tax_total)


def _issue(invoice: Invoice, *, actor, send: bool, tax_total: Decimal | None = None) -> Invoice:
    """Number and issue a draft; the caller has checked the actor may (issue, or credit
    for the credit note it has just made: a reseller credits the invoices it issued
    without issuing drafts)."""
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.state != Invoice.State.DRAFT:
            raise ValidationError("Only a draft can be issued.")
        amounts = list(locked.lines.values_list("amount", flat=True))
        if not amounts:
            raise ValidationError("An invoice needs at least one line.")
        locked.subtotal, locked.tax_total, locked.total = totals(amounts, locked.tax_rate)
        if tax_total is not None:
            locked.tax_total, locked.total = tax_total, locked.subtotal + tax_total
        settings = settings_for(locked.issuer_id)
        series = (
            InvoiceSequence.Series.CREDIT_NOTE
            if locked.kind == Invoice.Kind.CREDIT_NOTE
            else InvoiceSequence.Series.INVOICE
        )
        prefix = settings.credit_note_prefix if series == "credit_note" else settings.invoice_prefix
        sequence, seq = take_numbers(locked.issuer_id, series, 1)
        now = timezone.now()
        locked.sequence, locked.seq, locked.number = sequence, seq, format_number(prefix, seq)
        locked.state, locked.issued_at = Invoice.State.ISSUED, now
        locked.due_date = (now + timedelta(days=settings.due_days)).date()
        locked.save()
        audit.record(
            "invoice.issue",
            locked,
            actor=actor,
            changes={"number": [None, locked.number], "total": [None, str(locked.total)]},
        )
        if send:
            _send_on_commit([locked.pk])
    return locked


def do_create_credit_note(
    invoice: Invoice, *, actor, amount: Decimal | None = None, reason: str, send: bool = True
) -> Invoice:
    """Correct an issued invoice: a credit note (its own number series) for ``amount``
    before tax (default: all of it not yet credited), issued at once. The original is left
    as it was; its ``credited_total`` grows, and it counts as settled once nothing is due."""
    _require(actor, CREDIT, invoice)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the invoice is corrected."})
    with transaction.atomic():
        original = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if original.kind != Invoice.Kind.INVOICE or original.state not in (
            Invoice.State.ISSUED,
            Invoice.State.PAID,
        ):
            raise ValidationError("Only an issued invoice can be credited.")
        # What is left is counted from the notes themselves (net and tax apart): worked
        # back from the gross total, rounding drifted (three thirds left 0.01 due, and a
        # further cent could be credited beyond the subtotal).
        credited = original.credit_notes.exclude(state=Invoice.State.VOID).aggregate(
            net=Sum("subtotal"), tax=Sum("tax_total")
        )
        left = original.subtotal - (credited["net"] or ZERO)
        tax_left = original.tax_total - (credited["tax"] or ZERO)
        amount = left if amount is None else money(Decimal(amount))
        if left <= ZERO:
            raise ValidationError("This invoice is credited in full already.")
        if amount <= ZERO or amount > left:
            raise ValidationError({"amount": f"Between 0.01 and {left} (before tax)."})
        note = Invoice.objects.create(
            kind=Invoice.Kind.CREDIT_NOTE,
            customer_id=original.customer_id,
            issuer_id=original.issuer_id,
            credits=original,
            currency=original.currency,
            period_start=original.period_start,
            period_end=original.period_end,
            tax_rate=original.tax_rate,
            tax_name=original.tax_name,
            tax_country=original.tax_country,
            bill_from=original.bill_from,
            bill_to=original.bill_to,
            notes=reason,
        )
        InvoiceLine.objects.create(
            invoice=note,
            description=f"Correction of {original.number}: {reason}"[:200],
            quantity=Decimal(1),
            unit_price=amount,
            amount=amount,
        )
        # The last note takes exactly the tax not yet credited, so a full credit equals the
        # invoice's total to the cent; none credits more tax than was charged.
        tax = tax_left if amount == left else min(money(amount * original.tax_rate / 100), tax_left)
        note = _issue(note, actor=actor, send=send, tax_total=tax)
        original.credited_total += note.total
        before = original.state
        if original.balance <= ZERO and original.state == Invoice.State.ISSUED:
            original.state = Invoice.State.PAID
            original.paid_at = timezone.now()
        original.save()
        audit.record(
            "invoice.credit",
            original,
            actor=actor,
            changes={
                "credit_note": [None, note.number],
                "credited_total": [None, str(original.credited_total)],
                "state": [before, original.state],
            },
        )
        if original.state != before:
            # Settled by the credit: the same entry (and integrators' webhook event) as a
            # settling payment gives.
            audit.record(
                "invoice.paid",
                original,
                actor=actor,
                changes={"state": [before, original.state], "by": "credit note"},
            )
    return note


def do_void_invoice(invoice: Invoice, *, actor, reason: str) -> Invoice:
    """Void an issued invoice nothing was paid on (it keeps its number: no gap)."""
    _require(actor, VOID, invoice)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the invoice is voided."})
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.state == Invoice.State.DRAFT:
            locked.delete()
            audit.record("invoice.discard", locked, actor=actor)
            return locked
        if locked.state != Invoice.State.ISSUED or locked.amount_paid > ZERO:
            raise ValidationError("Only an issued invoice without payments can be voided.")
        # Its credit notes would stay issued against an invoice that no longer counts (and
        # its usage billed again): correct it with a further credit note instead.
        if locked.credited_total > ZERO or locked.credit_notes.exists():
            raise ValidationError(
                "This invoice has credit notes: credit the rest instead of voiding it."
            )
        # A card charge under way may still take the money: voiding now would let the
        # usage be billed again on top of it.
        if locked.payments.filter(state=Payment.State.PENDING).exists():
            raise ValidationError("A card payment of this invoice is under way: wait for it.")
        locked.state, locked.voided_at, locked.void_reason = (
            Invoice.State.VOID,
            timezone.now(),
            reason[:200],
        )
        refuse_nul_in(locked, ["void_reason"])
        locked.save()
        # Its usage may be billed again (by a new invoice for the period).
        UsageRecord.objects.filter(line__invoice=locked).update(line=None)
        audit.record(
            "invoice.void",
            locked,
            actor=actor,
            changes={"state": [Invoice.State.ISSUED, Invoice.State.VOID], "reason": [None, reason]},
        )
    return locked


def do_credit_invoice(invoice: Invoice, *, actor, data: dict) -> Invoice:
    """The portal's and API's form of ``do_create_credit_note``."""
    accept_only(data, ["amount", "reason"])
    return do_create_credit_note(
        invoice, actor=actor, amount=data.get("amount"), reason=data.get("reason") or ""
    )


def do_void(invoice: Invoice, *, actor, data: dict) -> Invoice:
    accept_only(data, ["reason"])
    return do_void_invoice(invoice, actor=actor, reason=data.get("reason") or "")


# Payments ----------------------------------------------------------------------------------


def record_payment(
    invoice: Invoice,
    *,
    amount: Decimal,
    method: str,
    actor=None,
    external_id: str = "",
    note: str = "",
    received_at=None,
    state: str = Payment.State.SUCCEEDED,
) -> Payment:
    """Record money received for an invoice (any method: manual here, Stripe from the
    payment integration) and mark the invoice paid once nothing is due. Audited; an
    ``invoice.paid`` entry when it becomes paid (integrators' webhook event)."""
    amount = Decimal(amount)
    if amount <= ZERO:
        raise ValidationError({"amount": "A positive amount."})
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.kind != Invoice.Kind.INVOICE or locked.state not in (
            Invoice.State.ISSUED,
            Invoice.State.PAID,
        ):
            raise ValidationError("Payments are recorded against issued invoices only.")
        if state == Payment.State.SUCCEEDED and amount > locked.balance:
            raise ValidationError({"amount": f"At most the balance due, {locked.balance}."})
        # A card charge under way may still take the balance: recording it by hand too
        # would have the customer pay twice (as void, refused until Stripe has answered).
        if (
            method != Payment.Method.STRIPE
            and locked.payments.filter(
                method=Payment.Method.STRIPE, state=Payment.State.PENDING
            ).exists()
        ):
            raise ValidationError(
                "A card payment of this invoice is under way: wait for its result (or use "
                "Check with Stripe) before recording a payment by hand."
            )
        payment = Payment(
            invoice=locked,
            amount=money(amount),
            currency=locked.currency,
            method=method,
            external_id=external_id,
            note=note,
            state=state,
            recorded_by=actor if getattr(actor, "is_authenticated", False) else None,
            received_at=received_at or timezone.now(),
        )
        payment.full_clean()
        refuse_nul_in(payment, ["external_id", "note"])
        try:
            with transaction.atomic():
                payment.save()
        except IntegrityError as exc:
            raise ValidationError({"external_id": "This reference is already recorded."}) from exc
        audit.record(
            "payment.record",
            payment,
            actor=actor,
            owner_id=locked.customer_id,
            changes={
                "invoice": [None, locked.number],
                "amount": [None, str(payment.amount)],
                "method": [None, method],
            },
        )
        if state == Payment.State.SUCCEEDED:
            locked.amount_paid += payment.amount
            if locked.balance <= ZERO and locked.state == Invoice.State.ISSUED:
                locked.state, locked.paid_at = Invoice.State.PAID, timezone.now()
                locked.save()
                audit.record(
                    "invoice.paid",
                    locked,
                    actor=actor,
                    changes={"state": [Invoice.State.ISSUED, Invoice.State.PAID]},
                )
            else:
                locked.save()
    return payment


def do_record_manual_payment(invoice: Invoice, *, actor, data: dict) -> Payment:
    """Staff (administrators, billing) or the issuing reseller record a bank transfer or
    cash by hand."""
    _require(actor, RECORD_PAYMENT, invoice)
    accept_only(data, PAYMENT_FIELDS)
    if data.get("amount") in (None, ""):
        raise ValidationError({"amount": "This field is required."})
    try:
        amount = Decimal(str(data["amount"]))
    except ArithmeticError as exc:
        raise ValidationError({"amount": "A number."}) from exc
    return record_payment(
        invoice,
        amount=amount,
        method=Payment.Method.MANUAL,
        actor=actor,
        external_id=(data.get("external_id") or "").strip(),
        note=(data.get("note") or "").strip(),
        received_at=data.get("received_at") or None,
    )


# Settings, tax rates, profiles ------------------------------------------------------------


def _save_audited(obj, fields, data: dict, *, actor, action: str):
    """Set the accepted fields, validate, then save and audit the change in one transaction."""
    accept_only(data, fields)
    before = audit.snapshot(obj, fields) if obj.pk else {}
    for name, value in data.items():
        setattr(obj, name, value)
    refuse_nul_in(obj, fields)
    obj.full_clean()
    obj.updated_at = timezone.now()
    with transaction.atomic():
        obj.save()
        changes = audit.diff(before, audit.snapshot(obj, fields))
        audit.record(action, obj, actor=actor, changes=changes)
    return obj


def _require_on(actor, action: str, obj) -> None:
    """The policy decides for settings and tax rates as for invoices: whoever calls."""
    if not may(actor, action, obj if obj.pk else type(obj)):
        raise PermissionDenied("You may not change billing settings.")


def do_update_settings(settings: BillingSettings, *, actor, data: dict) -> BillingSettings:
    """Change an issuer's settings. A reseller's own row is made on its first save (the
    issuer may change its own; adding rows for others is staff's)."""
    own_new = not settings.pk and settings.issuer_id is not None
    if own_new and settings.issuer_id == getattr(actor, "pk", None):
        _require_on(actor, CHANGE, BillingSettings())  # resellers: the model-level answer
    else:
        _require_on(actor, ADD if not settings.pk else CHANGE, settings)
    try:
        return _save_audited(
            settings, SETTINGS_FIELDS, data, actor=actor, action="billing.settings.update"
        )
    except IntegrityError as exc:
        # Two first saves of the same issuer's row at once: one wins, the other asks again.
        raise ValidationError(
            "These settings were saved meanwhile (another tab?): reload and try again."
        ) from exc


def do_save_tax_rate(*, actor, data: dict, rate: TaxRate | None = None) -> TaxRate:
    rate = rate or TaxRate()
    _require_on(actor, CHANGE if rate.pk else ADD, rate)
    action = "tax_rate.update" if rate.pk else "tax_rate.create"
    return _save_audited(rate, TAX_RATE_FIELDS, data, actor=actor, action=action)


def do_create_tax_rate(*, actor, data: dict) -> TaxRate:
    return do_save_tax_rate(actor=actor, data=data)


def do_update_tax_rate(rate: TaxRate, *, actor, data: dict) -> TaxRate:
    return do_save_tax_rate(actor=actor, data=data, rate=rate)


def do_delete_tax_rate(rate: TaxRate, *, actor) -> None:
    _require_on(actor, DELETE, rate)
    with transaction.atomic():
        audit.record(
            "tax_rate.delete", rate, actor=actor, changes={"country": [rate.country, None]}
        )
        rate.delete()


def do_update_profile(profile: BillingProfile, *, actor, data: dict) -> BillingProfile:
    return _save_audited(
        profile, PROFILE_FIELDS, data, actor=actor, action="billing.profile.update"
    )


def profile_of(user) -> BillingProfile:
    profile, _ = BillingProfile.objects.get_or_create(user=user)
    return profile


__all__ = ["ImmutableInvoice"]
