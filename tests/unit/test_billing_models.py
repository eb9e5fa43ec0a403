"""billing.models: issued invoices never change what they say; the billing role's reach."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import ImmutableInvoice, Invoice, InvoiceLine, TaxRate
from core.policy import CHANGE, VIEW, may, restrict
from servers.models import Server

pytestmark = pytest.mark.django_db


def issued(customer) -> Invoice:
    invoice = Invoice.objects.create(customer=customer, currency="EUR")
    InvoiceLine.objects.create(invoice=invoice, description="Plan", amount=Decimal("5.00"))
    invoice.state, invoice.number, invoice.total = Invoice.State.ISSUED, "INV-1", Decimal("5")
    invoice.save()
    return invoice


class TestImmutable:
    def test_a_draft_changes_freely(self, customer):
        invoice = Invoice.objects.create(customer=customer, currency="EUR")
        invoice.total = Decimal("9.99")
        invoice.save()
        line = InvoiceLine.objects.create(invoice=invoice, description="x")
        line.delete()
        invoice.delete()

    def test_an_issued_invoice_refuses_changes_to_what_it_says(self, customer):
        invoice = issued(customer)
        invoice.total = Decimal("1.00")
        with pytest.raises(ImmutableInvoice, match="total"):
            invoice.save()
        invoice.refresh_from_db()
        invoice.state = Invoice.State.DRAFT
        with pytest.raises(ImmutableInvoice):
            invoice.save()
        with pytest.raises(ImmutableInvoice):
            Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("0"))
        with pytest.raises(ImmutableInvoice):
            invoice.delete()
        with pytest.raises(ImmutableInvoice):
            Invoice.objects.filter(pk=invoice.pk).delete()
        invoice.refresh_from_db()
        assert invoice.total == Decimal("5.00")

    def test_its_lines_are_frozen_too(self, customer):
        invoice = issued(customer)
        line = invoice.lines.get()
        line.amount = Decimal("0")
        with pytest.raises(ImmutableInvoice):
            line.save()
        with pytest.raises(ImmutableInvoice):
            line.delete()
        with pytest.raises(ImmutableInvoice):
            InvoiceLine.objects.create(invoice=invoice, description="sneaked in")
        # Bulk, as for the invoice itself: neither through the manager nor the relation.
        with pytest.raises(ImmutableInvoice):
            InvoiceLine.objects.filter(invoice=invoice).update(amount=Decimal("0"))
        with pytest.raises(ImmutableInvoice):
            invoice.lines.all().delete()
        with pytest.raises(ImmutableInvoice):
            InvoiceLine.objects.filter(pk=line.pk).delete()
        assert invoice.lines.get().amount == Decimal("5.00")
        draft = Invoice.objects.create(customer=customer, currency="EUR")
        InvoiceLine.objects.create(invoice=draft, description="free")
        assert draft.lines.update(amount=Decimal("1")) == 1 and draft.lines.all().delete()[0]

    def test_an_issued_invoice_is_never_bulk_set_back_to_draft(self, customer):
        invoice = issued(customer)
        with pytest.raises(ImmutableInvoice, match="draft"):
            Invoice.objects.filter(pk=invoice.pk).update(state=Invoice.State.DRAFT)
        invoice.refresh_from_db()
        assert invoice.state == Invoice.State.ISSUED

    def test_payment_state_still_moves(self, customer):
        invoice = issued(customer)
        invoice.state, invoice.amount_paid = Invoice.State.PAID, Decimal("5.00")
        invoice.save()
        Invoice.objects.filter(pk=invoice.pk).update(reminders_sent=1)
        invoice.refresh_from_db()
        assert (invoice.state, invoice.reminders_sent) == (Invoice.State.PAID, 1)


class TestBillingRole:
    def test_sees_every_invoice_and_no_servers(self, customer, mallory, billing_user):
        mine, theirs = issued(customer), Invoice.objects.create(customer=mallory, currency="EUR")
        Server.objects.create(name="s", address="93.184.216.34", owner=customer)
        assert set(restrict(Invoice, billing_user)) == {mine, theirs}
        assert not restrict(Server, billing_user).exists()
        assert not restrict(type(customer), billing_user).exclude(pk=billing_user.pk).exists()
        assert may(billing_user, CHANGE, TaxRate)
        assert billing_user.requires_second_factor and not billing_user.is_staff

    def test_customers_and_resellers_see_their_own(self, customer, reseller, mallory):
        mine = issued(customer)
        assert list(restrict(Invoice, customer)) == [mine]
        # A reseller sees the invoices it issued, not the panel's to its customer.
        assert not restrict(Invoice, reseller).exists()
        billed = Invoice.objects.create(customer=customer, issuer=reseller, currency="EUR")
        assert list(restrict(Invoice, reseller)) == [billed]
        assert not restrict(Invoice, mallory).exists()
        assert not restrict(Invoice, customer, CHANGE).exists()
        assert may(customer, VIEW, mine)


def test_tax_rates_and_settings_change_through_the_admin(admin_user, customer):
    from billing.models import BillingSettings
    from core.models import AuditEntry
    from tests.conftest import login

    client = login(admin_user)
    resp = client.post(
        "/admin/billing/taxrate/add/", {"country": "NL", "name": "BTW", "rate": "21.00"}
    )
    assert resp.status_code == 302, resp.content[:500]
    rate = TaxRate.objects.get(country="NL")
    assert AuditEntry.objects.filter(action="tax_rate.create", object_id=str(rate.pk)).exists()
    bad = client.post("/admin/billing/taxrate/add/", {"country": "nl", "name": "x", "rate": "5"})
    assert bad.status_code == 200 and TaxRate.objects.count() == 1
    settings = BillingSettings.objects.create()
    resp = client.get(f"/admin/billing/billingsettings/{settings.pk}/change/")
    assert resp.status_code == 200
    assert login(customer).get("/admin/billing/taxrate/").status_code == 302
