"""Corrections of issued invoices: credit notes add up to the cent, an invoice with credit
notes is not voided, a void invoice stays void, lines of issued invoices stay as they are,
and currencies the panel cannot charge correctly are refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from billing import services
from billing.models import (
    BillingSettings,
    ImmutableInvoice,
    Invoice,
    InvoiceLine,
    validate_currency,
)
from core.models import AuditEntry


def issued(customer, billing_user, net: str, rate: str = "19.00") -> Invoice:
    BillingSettings.objects.get_or_create(issuer=None, defaults={"legal_name": "Panel"})
    draft = Invoice.objects.create(customer=customer, currency="EUR", tax_rate=Decimal(rate))
    InvoiceLine.objects.create(
        invoice=draft, description="Hosting", unit_price=Decimal(net), amount=Decimal(net)
    )
    return services.do_issue_invoice(draft, actor=billing_user, send=False)


def credit(invoice, billing_user, amount=None):
    return services.do_create_credit_note(
        invoice, actor=billing_user, amount=amount, reason="correction", send=False
    )


@pytest.mark.django_db
def test_three_thirds_credit_the_whole_total_to_the_cent(customer, billing_user):
    invoice = issued(customer, billing_user, "100.00")
    assert invoice.total == Decimal("119.00")
    for part in ("33.33", "33.33", "33.34"):
        credit(invoice, billing_user, Decimal(part))
    invoice.refresh_from_db()
    assert invoice.credited_total == Decimal("119.00") and invoice.balance == Decimal("0.00")
    assert invoice.state == Invoice.State.PAID
    # Settled by the credit: the same "invoice.paid" entry (integrators' event) as a payment.
    assert AuditEntry.objects.filter(action="invoice.paid", object_id=str(invoice.uuid)).exists()
    with pytest.raises(ValidationError, match="in full"):
        credit(invoice, billing_user, Decimal("0.01"))


@pytest.mark.django_db
def test_cent_notes_never_credit_more_tax_than_was_charged(customer, billing_user):
    invoice = issued(customer, billing_user, "0.04", rate="50.00")  # tax 0.02
    notes = [credit(invoice, billing_user, Decimal("0.01")) for _ in range(4)]
    assert all(n.tax_total >= 0 for n in notes)
    assert sum(n.tax_total for n in notes) == invoice.tax_total
    assert sum(n.total for n in notes) == invoice.total


@pytest.mark.django_db
def test_an_invoice_with_credit_notes_is_not_voided(customer, billing_user):
    invoice = issued(customer, billing_user, "10.00")
    credit(invoice, billing_user, Decimal("4.00"))
    with pytest.raises(ValidationError, match="credit notes"):
        services.do_void_invoice(invoice, actor=billing_user, reason="wrong")
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED


@pytest.mark.django_db
def test_a_void_invoice_stays_void(customer, billing_user):
    invoice = services.do_void_invoice(
        issued(customer, billing_user, "10.00"), actor=billing_user, reason="wrong"
    )
    with pytest.raises(ImmutableInvoice):
        Invoice.objects.filter(pk=invoice.pk).update(state=Invoice.State.ISSUED)
    invoice.state = Invoice.State.ISSUED
    with pytest.raises(ImmutableInvoice):
        invoice.save()
    assert Invoice.objects.get(pk=invoice.pk).state == Invoice.State.VOID


@pytest.mark.django_db
def test_lines_cannot_be_bulk_added_to_an_issued_invoice(customer, billing_user):
    invoice = issued(customer, billing_user, "10.00")
    extra = InvoiceLine(invoice=invoice, description="More", unit_price=1, amount=1)
    with pytest.raises(ImmutableInvoice):
        InvoiceLine.objects.bulk_create([extra])
    assert invoice.lines.count() == 1
    draft = Invoice.objects.create(customer=customer, currency="EUR")
    InvoiceLine.objects.bulk_create([InvoiceLine(invoice=draft, description="x", amount=1)])
    assert draft.lines.count() == 1


@pytest.mark.parametrize("code", ["JPY", "KWD", "ISK", "BHD"])
def test_currencies_without_hundredths_are_refused(code):
    with pytest.raises(ValidationError, match="hundredths"):
        validate_currency(code)


@pytest.mark.parametrize("code", ["EUR", "USD", "GBP", "CHF", "HUF"])
def test_currencies_in_hundredths_are_accepted(code):
    validate_currency(code)
