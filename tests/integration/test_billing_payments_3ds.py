"""3-D Secure against the Stripe stand-in: the portal's "Pay now" is on session (the bank's
page, then back to the panel, which reads the outcome from Stripe), the API stays off
session (failed and canceled at Stripe), an abandoned authentication is canceled by a new
"Pay now" or, after an hour, by reconcile."""

from __future__ import annotations

import re
import urllib.request
from datetime import timedelta
from decimal import Decimal
from urllib.error import HTTPError
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from billing import payments, services, tasks
from billing.models import Invoice, Payment
from core.models import AuditEntry
from tests.conftest import login
from tests.integration.stripe_standin import sign
from tests.integration.test_billing_payments import (
    WEBHOOK_SECRET,
    post_event,
    save_card,
)

pytestmark = pytest.mark.django_db


THREE_DS = "pm_card_authenticationRequired"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def bank_page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
        return answer.read().decode()


def press(url: str, button: str) -> str:
    """What the browser does on the stand-in's 3DS page: submit the form of ``button``;
    returns where Stripe sends the browser back (the Location)."""
    page = bank_page(url)
    forms = re.findall(r'<form method="post" action="([^"]+)"><button[^>]*>([^<]+)</button>', page)
    action = dict((text, act) for act, text in forms)[button]
    base = urlsplit(url)
    request = urllib.request.Request(f"{base.scheme}://{base.netloc}{action}", data=b"")
    try:
        urllib.request.build_opener(_NoRedirect).open(request, timeout=10)
    except HTTPError as exc:
        assert exc.code == 302
        return exc.headers["Location"]
    raise AssertionError("the 3DS page did not redirect")


def back_to_panel(client, location: str):
    """The browser following Stripe's redirect to the panel's return address."""
    parts = urlsplit(location)
    return client.get(f"{parts.path}?{parts.query}", follow=True)


def pay_now(client, invoice):
    return client.post(reverse("billing_pay_invoice", args=[invoice.uuid]))


def test_pay_now_sends_the_browser_to_the_bank_and_back_paid(
    invoice, customer, admin_user, standin, client
):
    save_card(customer, THREE_DS)
    browser = login(customer)
    answer = pay_now(browser, invoice)
    # Not a 302 to another origin: the invoice page's CSP (form-action 'self') would block
    # the form's redirect. A page that moves on by itself (Refresh) with a link.
    assert answer.status_code == 200
    assert "form-action 'self'" in answer["Content-Security-Policy"]
    bank = re.fullmatch(r"0;url=(\S+)", answer["Refresh"])[1]
    assert bank.startswith(f"{standin.url}/3ds/pi_")
    assert f'href="{bank}"'.encode() in answer.content
    charge = [r for r in standin.requests if r[1] == "/v1/payment_intents"][-1][2]
    assert charge["confirm"] == "true" and "off_session" not in charge
    assert charge["return_url"] == (
        f"http://testserver/billing/payments/invoices/{invoice.uuid}/return/"
    )
    payment = Payment.objects.get(invoice=invoice)
    assert payment.state == Payment.State.PENDING and bank.endswith(payment.external_id)
    # Waiting for the bank: no void, and the invoice page says so.
    with pytest.raises(ValidationError, match="under way"):
        services.do_void_invoice(invoice, actor=admin_user, reason="x")
    assert b'data-testid="pending-payment"' in browser.get(invoice.get_absolute_url()).content

    page = bank_page(bank)
    assert ">Complete authentication</button>" in page and ">Fail authentication</button>" in page
    location = press(bank, "Complete authentication")
    assert f"payment_intent={payment.external_id}" in location
    assert "redirect_status=succeeded" in location
    landed = back_to_panel(browser, location)
    assert landed.redirect_chain[-1][0] == invoice.get_absolute_url()
    assert b"Paid: 12.50 EUR." in landed.content
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == Decimal("12.50")

    # The same return address again (reload, back button): nothing more happens.
    calls = len(standin.requests)
    again = back_to_panel(browser, location)
    assert b"This payment is recorded" in again.content and len(standin.requests) == calls
    # Stripe's webhook for it arrives too: still one payment, one invoice.paid.
    body, signature = next(e for e in reversed(standin.events) if b".succeeded" in e[0])
    assert post_event(client, body, signature).content == b"paid"
    invoice.refresh_from_db()
    assert invoice.amount_paid == Decimal("12.50") and invoice.payments.count() == 1
    assert (
        AuditEntry.objects.filter(action="invoice.paid", object_id=str(invoice.uuid)).count() == 1
    )


def test_htmx_pay_now_navigates_to_the_bank(invoice, customer, standin):
    save_card(customer, THREE_DS)
    answer = login(customer).post(
        reverse("billing_pay_invoice", args=[invoice.uuid]), HTTP_HX_REQUEST="true"
    )
    assert answer.status_code == 204 and answer["HX-Redirect"].startswith(f"{standin.url}/3ds/")


def test_failed_authentication_fails_the_attempt_and_pay_now_works_again(
    invoice, customer, standin
):
    save_card(customer, THREE_DS)
    browser = login(customer)
    bank = re.fullmatch(r"0;url=(\S+)", pay_now(browser, invoice)["Refresh"])[1]
    landed = back_to_panel(browser, press(bank, "Fail authentication"))
    assert b"authentication (3-D Secure) failed; nothing was charged" in landed.content
    failed = Payment.objects.get(invoice=invoice)
    assert failed.state == Payment.State.FAILED and "failed" in failed.failure_message
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and invoice.amount_paid == 0
    visa = save_card(customer)
    payments.do_pay_invoice(invoice, actor=customer, card=visa)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID


def test_the_return_address_is_not_trusted(invoice, customer, admin_user, standin):
    """The status in the address means nothing, and an intent of another invoice (even the
    same customer's, paid at the bank) is refused: only Stripe's record of this invoice's
    intent settles it."""
    save_card(customer, THREE_DS)
    other = Invoice.objects.create(customer=customer, currency="EUR", bill_to={"email": "c@x.t"})
    other.lines.create(description="Another month", amount=Decimal("7.00"), position=0)
    services.do_issue_invoice(other, actor=admin_user, send=False)
    browser = login(customer)
    pay_now(browser, invoice)
    bank_other = re.fullmatch(r"0;url=(\S+)", pay_now(browser, other)["Refresh"])[1]
    mine = Payment.objects.get(invoice=invoice)
    theirs = Payment.objects.get(invoice=other)
    returned = reverse("billing_payment_return", args=[invoice.uuid])

    # A forged "succeeded" for this invoice's own intent, still waiting at the bank.
    answer = browser.get(
        f"{returned}?payment_intent={mine.external_id}&redirect_status=succeeded", follow=True
    )
    assert b"authentication is not complete" in answer.content
    # The other invoice's intent, authenticated at the bank, on this invoice's address.
    press(bank_other, "Complete authentication")
    answer = browser.get(f"{returned}?payment_intent={theirs.external_id}", follow=True)
    assert b"This payment is not one of this invoice&#x27;s." in answer.content
    for bad in ("pi_nonexistent", "x' OR 1=1", ""):
        answer = browser.get(returned, {"payment_intent": bad}, follow=True)
        assert b"not one of this invoice" in answer.content
    mine.refresh_from_db()
    invoice.refresh_from_db()
    assert mine.state == Payment.State.PENDING and invoice.state == Invoice.State.ISSUED
    # The other invoice is settled on its own return address.
    back = reverse("billing_payment_return", args=[other.uuid])
    browser.get(f"{back}?payment_intent={theirs.external_id}")
    other.refresh_from_db()
    assert other.state == Invoice.State.PAID
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and invoice.amount_paid == 0


def test_outsiders_cannot_use_the_return_address(invoice, customer, mallory, standin):
    save_card(customer, THREE_DS)
    pay_now(login(customer), invoice)
    payment = Payment.objects.get(invoice=invoice)
    returned = reverse("billing_payment_return", args=[invoice.uuid])
    answer = login(mallory).get(returned, {"payment_intent": payment.external_id})
    assert answer.status_code == 404


def test_pay_now_again_cancels_the_abandoned_authentication(invoice, customer, standin):
    save_card(customer, THREE_DS)
    browser = login(customer)
    first_bank = re.fullmatch(r"0;url=(\S+)", pay_now(browser, invoice)["Refresh"])[1]
    first = Payment.objects.get(invoice=invoice)
    # The customer closed the bank's page and presses "Pay now" again.
    second_bank = re.fullmatch(r"0;url=(\S+)", pay_now(browser, invoice)["Refresh"])[1]
    first.refresh_from_db()
    assert first.state == Payment.State.FAILED and "Replaced by a new payment" in (
        first.failure_message
    )
    assert standin.objects[first.external_id]["status"] == "canceled"
    assert standin.objects[first.external_id]["cancellation_reason"] == "abandoned"
    second = invoice.payments.get(state=Payment.State.PENDING)
    assert second_bank.endswith(second.external_id) and second.pk != first.pk
    keys = [r[3]["Idempotency-Key"] for r in standin.requests if r[1] == "/v1/payment_intents"]
    assert keys[-1].startswith(f"panel-invoice-{invoice.uuid}-2-pm_")
    assert keys[-1].endswith("-1250-on-session")
    # The first page, left open, cannot take the money any more.
    location = press(first_bank, "Complete authentication")
    assert standin.objects[first.external_id]["status"] == "canceled"
    assert b"This payment attempt has ended" in back_to_panel(browser, location).content
    back_to_panel(browser, press(second_bank, "Complete authentication"))
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == Decimal("12.50")
    assert invoice.payments.filter(state=Payment.State.SUCCEEDED).count() == 1


def test_pay_now_again_after_the_bank_said_yes_settles_instead_of_charging_twice(
    invoice, customer, standin
):
    save_card(customer, THREE_DS)
    browser = login(customer)
    bank = re.fullmatch(r"0;url=(\S+)", pay_now(browser, invoice)["Refresh"])[1]
    charges = len([r for r in standin.requests if r[1] == "/v1/payment_intents"])
    press(bank, "Complete authentication")  # the browser never came back (closed)
    answer = browser.post(reverse("billing_pay_invoice", args=[invoice.uuid]), follow=True)
    assert b"Only an issued, unpaid invoice can be paid." in answer.content
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.payments.count() == 1
    assert len([r for r in standin.requests if r[1] == "/v1/payment_intents"]) == charges


def test_api_pay_stays_off_session_fails_and_cancels_at_stripe(invoice, customer, standin):
    save_card(customer, THREE_DS)
    api = login(customer)
    answer = api.post(f"/api/v1/invoices/{invoice.uuid}/pay/")
    assert answer.status_code == 400 and "needs authentication" in answer.content.decode()
    charge = [r for r in standin.requests if r[1] == "/v1/payment_intents"][-1][2]
    assert charge["off_session"] == "true" and "return_url" not in charge
    attempt = Payment.objects.get(invoice=invoice)
    assert attempt.state == Payment.State.FAILED
    # Canceled at Stripe: it cannot be completed later behind the panel's back.
    assert standin.objects[attempt.external_id]["status"] == "canceled"
    cancels = [r for r in standin.requests if r[1].endswith("/cancel")]
    assert cancels[-1][1] == f"/v1/payment_intents/{attempt.external_id}/cancel"


def test_an_authentication_left_open_is_canceled_after_an_hour(
    invoice, customer, admin_user, standin
):
    save_card(customer, THREE_DS)
    pay_now(login(customer), invoice)
    payment = Payment.objects.get(invoice=invoice)
    # Twenty minutes later the light check asks Stripe: still at the bank, left alone.
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    standin.objects[payment.external_id]["created"] -= 20 * 60
    assert tasks.reactivate_paid() == "0 reactivated"
    payment.refresh_from_db()
    assert payment.state == Payment.State.PENDING
    assert standin.objects[payment.external_id]["status"] == "requires_action"
    assert not AuditEntry.objects.filter(action="payment.reconcile").exists()  # no change
    # After an hour: canceled at Stripe, the attempt failed, Pay and Void free again.
    standin.objects[payment.external_id]["created"] -= 60 * 60
    assert tasks.reactivate_paid() == "1 pending card payments ended, 0 reactivated"
    payment.refresh_from_db()
    assert payment.state == Payment.State.FAILED and "within an hour" in payment.failure_message
    assert standin.objects[payment.external_id]["status"] == "canceled"
    entry = AuditEntry.objects.get(action="payment.reconcile")
    assert entry.changes["result"] == "failed" and entry.changes["payment_intent"]
    services.do_void_invoice(invoice, actor=admin_user, reason="customer left")


def test_canceled_webhook_of_the_replaced_attempt_changes_nothing_more(
    invoice, customer, standin, client
):
    save_card(customer, THREE_DS)
    browser = login(customer)
    pay_now(browser, invoice)
    pay_now(browser, invoice)
    body, signature = next(e for e in reversed(standin.events) if b".canceled" in e[0])
    assert post_event(client, body, signature).content == b"failed"
    assert invoice.payments.filter(state=Payment.State.PENDING).count() == 1
    forged = body.replace(b"canceled", b"succeeded")
    assert post_event(client, forged, sign(forged, "whsec_not_ours")).status_code == 400
    assert post_event(client, body, sign(body, WEBHOOK_SECRET)).content == b"duplicate"


def test_an_api_attempt_refused_by_stripe_does_not_block_pay_now(
    invoice, customer, standin, monkeypatch
):
    """The API's attempt was refused before Stripe did anything (the attempt is forgotten).
    The portal's "Pay now" of the same attempt is another request (on session, its own
    key): Stripe would refuse the key reused with other parameters. (An attempt whose
    answer was lost blocks Pay now instead: test_billing_payments_review3.py.)"""
    from billing import stripe_client
    from billing.stripe_client import NOT_REACHED, PaymentError

    save_card(customer, THREE_DS)
    real_charge = stripe_client.charge

    def refused(**kwargs):
        raise PaymentError(NOT_REACHED, retryable=True, refused=True)

    monkeypatch.setattr(stripe_client, "charge", refused)
    assert login(customer).post(f"/api/v1/invoices/{invoice.uuid}/pay/").status_code == 400
    assert not invoice.payments.exists()
    monkeypatch.setattr(stripe_client, "charge", real_charge)
    answer = pay_now(login(customer), invoice)
    assert answer.status_code == 200 and answer["Refresh"].startswith(f"0;url={standin.url}/3ds/")
    assert invoice.payments.get().state == Payment.State.PENDING
