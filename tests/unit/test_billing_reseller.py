"""A reseller works the invoices it issued to its customers: records payments (portal and
API), issues credit notes, sees the payments; never on the panel's invoices of its
customers nor on another reseller's (404, nothing recorded); never voids. Audited."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied

from billing import services
from billing.models import Invoice, Payment
from core.models import AuditEntry
from tests.conftest import login, make_user

pytestmark = pytest.mark.django_db


def make_invoice(customer, issuer, actor, total="10.00") -> Invoice:
    draft = Invoice.objects.create(customer=customer, issuer=issuer, currency="EUR")
    draft.lines.create(description="Hosting plan Gold", amount=Decimal(total))
    return services.do_issue_invoice(draft, actor=actor, send=False)


@pytest.fixture
def invoices(admin_user, reseller, customer):
    other = make_user("other-reseller@example.com", "reseller")
    theirs = make_user("theirs@example.com", "customer", reseller=other)
    return {
        "own": make_invoice(customer, reseller, admin_user),
        "panel": make_invoice(customer, None, admin_user),
        "other": make_invoice(theirs, other, admin_user),
    }


def test_reseller_records_a_payment_on_its_own_invoice_in_the_portal(invoices, reseller):
    own = invoices["own"]
    client = login(reseller)
    detail = client.get(f"/billing/invoices/{own.uuid}/").content.decode()
    assert "Record a payment" in detail and "Issue a credit note" in detail
    assert 'action="/billing/invoices/' + str(own.uuid) + '/void/"' not in detail
    resp = client.post(f"/billing/invoices/{own.uuid}/payment/", {"amount": "10", "note": "SEPA"})
    assert resp.status_code == 302
    payment = Payment.objects.get(invoice=own)
    assert (payment.amount, payment.recorded_by) == (Decimal("10.00"), reseller)
    own.refresh_from_db()
    assert own.state == Invoice.State.PAID
    entry = AuditEntry.objects.get(action="payment.record")
    assert (entry.actor_id, entry.owner_id) == (reseller.pk, own.customer_id)
    assert AuditEntry.objects.filter(action="invoice.paid", actor_id=reseller.pk).exists()
    # The payment shows on the invoice page and in the API.
    page = client.get(f"/billing/invoices/{own.uuid}/").content.decode()
    assert "10.00 EUR (Manual" in page
    api = client.get("/api/v1/payments/").json()["results"]
    assert [p["uuid"] for p in api] == [str(payment.uuid)]


def test_reseller_cannot_record_on_the_panels_invoice_of_its_customer(invoices, reseller):
    panel = invoices["panel"]
    client = login(reseller)
    # The panel's invoice of its customer is not the reseller's: out of reach.
    assert client.get(f"/billing/invoices/{panel.uuid}/").status_code == 404
    resp = client.post(f"/billing/invoices/{panel.uuid}/payment/", {"amount": "1"})
    assert resp.status_code == 404
    resp = client.post(f"/billing/invoices/{panel.uuid}/credit/", {"reason": "x"})
    assert resp.status_code == 404
    assert not Payment.objects.exists() and not Invoice.objects.filter(credits=panel).exists()


def test_reseller_cannot_reach_another_resellers_invoice(invoices, reseller):
    other = invoices["other"]
    client = login(reseller)
    assert client.get(f"/billing/invoices/{other.uuid}/").status_code == 404
    assert client.post(f"/billing/invoices/{other.uuid}/payment/", {"amount": "1"}).status_code == (
        404
    )
    resp = client.post(
        f"/api/v1/invoices/{other.uuid}/record-payment/", {"amount": "1"}, "application/json"
    )
    assert resp.status_code == 404
    assert not Payment.objects.exists()


def test_reseller_records_payments_through_the_api(invoices, reseller):
    client = login(reseller)
    own, panel = invoices["own"], invoices["panel"]
    resp = client.post(
        f"/api/v1/invoices/{own.uuid}/record-payment/",
        {"amount": "4.00", "external_id": "BANK-1"},
        "application/json",
    )
    assert resp.status_code == 201, resp.content
    assert Payment.objects.get().recorded_by == reseller
    resp = client.post(
        f"/api/v1/invoices/{panel.uuid}/record-payment/", {"amount": "1"}, "application/json"
    )
    assert resp.status_code == 404
    assert Payment.objects.count() == 1


def test_reseller_credits_its_own_invoice_in_its_own_series(invoices, reseller):
    own = invoices["own"]
    resp = login(reseller).post(
        f"/billing/invoices/{own.uuid}/credit/", {"amount": "2", "reason": "outage"}
    )
    assert resp.status_code == 302
    note = Invoice.objects.get(credits=own)
    assert (note.issuer_id, note.number, note.total) == (reseller.pk, "CN-000001", Decimal("2.00"))
    assert AuditEntry.objects.filter(action="invoice.credit", actor_id=reseller.pk).exists()
    # The note is the reseller's too: it reads it.
    assert login(reseller).get(f"/billing/invoices/{note.uuid}/").status_code == 200


def test_reseller_does_not_void(invoices, reseller):
    own = invoices["own"]
    resp = login(reseller).post(f"/billing/invoices/{own.uuid}/void/", {"reason": "oops"})
    assert resp.status_code == 404
    own.refresh_from_db()
    assert own.state == Invoice.State.ISSUED
    with pytest.raises(PermissionDenied):
        services.do_void_invoice(own, actor=reseller, reason="oops")


def test_a_reseller_does_not_issue_drafts(reseller, customer):
    draft = Invoice.objects.create(customer=customer, issuer=reseller, currency="EUR")
    draft.lines.create(description="x", amount=Decimal("1.00"))
    with pytest.raises(PermissionDenied):
        services.do_issue_invoice(draft, actor=reseller, send=False)


def test_revenue_page_shows_the_resellers_own_invoices(invoices, reseller):
    page = login(reseller).get("/billing/revenue/")
    assert page.status_code == 200
    unpaid = {i.pk for i in page.context["unpaid"]}
    assert unpaid == {invoices["own"].pk}
