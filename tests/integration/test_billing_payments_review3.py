"""Card payments, third review: no second charge after a lost answer, an intent applied only
when its amount and currency are the payment's, failed 3-D Secure intents canceled at
Stripe, off-session 3-D Secure as Stripe answers it (402), the light check's fairness, the
dunning queue for resellers, and refunds recorded (by staff, or Stripe's event)."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta
from decimal import Decimal
from urllib.error import HTTPError
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from billing import cards, dunning, payments, payments_views, services, stripe_client
from billing.models import Invoice, Payment
from core.models import AuditEntry
from tests.conftest import login
from tests.integration.stripe_fixtures import PUBLISHABLE_KEY
from tests.integration.stripe_standin import sign
from tests.integration.test_billing_payments import WEBHOOK_SECRET, post_event, save_card
from tests.integration.test_billing_payments_3ds import THREE_DS, back_to_panel, pay_now, press

pytestmark = pytest.mark.django_db

PAY_RETURN = "https://panel.test/billing/payments/return/"


def issue(customer, actor, *, issuer=None, amount="12.50", due_days_ago=0) -> Invoice:
    draft = Invoice.objects.create(
        customer=customer, issuer=issuer, currency="EUR", bill_to={"email": "c@x.t"}
    )
    draft.lines.create(description="Hosting plan Gold", amount=Decimal(amount), position=0)
    services.do_issue_invoice(draft, actor=actor, send=False)
    if due_days_ago:
        # The invoice's own queryset refuses to change an issued invoice.
        Invoice._base_manager.filter(pk=draft.pk).update(
            due_date=timezone.localdate() - timedelta(days=due_days_ago)
        )
    draft.refresh_from_db()
    return draft


@pytest.fixture
def invoice(admin_user, customer, stripe_account):
    return issue(customer, admin_user)


def charges(standin) -> int:
    return len([r for r in standin.requests if r[0] == "POST" and r[1] == "/v1/payment_intents"])


def events_for(standin, object_id: str, kind: str) -> list[bytes]:
    return [
        body
        for body, _ in standin.events
        if json.loads(body)["type"] == kind
        and object_id in (json.loads(body)["data"]["object"].get("id"),
                          json.loads(body)["data"]["object"].get("payment_intent"))
    ]  # fmt: skip


def small_intent(invoice, card, *, cents=1, currency="usd", key="leftover"):
    """A leftover succeeded intent with the invoice's metadata but another amount."""
    return stripe_client.charge(
        amount_cents=cents, currency=currency,
        customer_id=cards.ensure_customer(invoice.customer), payment_method=card.stripe_id,
        invoice_uuid=str(invoice.uuid), description="leftover",
        idempotency_key=f"{key}-{invoice.uuid}",
    )  # fmt: skip


def old(payment: Payment, minutes: int = 30) -> Payment:
    Payment.objects.filter(pk=payment.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes)
    )
    payment.refresh_from_db()
    return payment


# 1. No second charge after a lost answer ---------------------------------------------------


def test_lost_api_answer_then_pay_now_does_not_charge_twice(
    invoice, customer, standin, client, monkeypatch
):
    """The reviewer's scenario: Stripe charged the API's attempt, its answer was lost (an
    error that does not prove Stripe did nothing), then the customer uses the portal's Pay
    now (another idempotency key). The attempt stays pending and blocks; reconcile settles
    it; the first charge's webhook changes nothing more."""
    save_card(customer)
    real = stripe_client.charge
    made = {}

    def lost(**kwargs):
        made["pi"] = real(**kwargs)  # Stripe charged ...
        raise stripe_client.PaymentError("timeout", retryable=True)  # ... the answer was lost

    monkeypatch.setattr(stripe_client, "charge", lost)
    with pytest.raises(ValidationError, match="not known yet"):
        payments.do_pay_invoice(invoice, actor=customer)  # the API: off session
    attempt = invoice.payments.get()
    assert attempt.state == Payment.State.PENDING and attempt.external_id == ""
    monkeypatch.setattr(stripe_client, "charge", real)
    before = charges(standin)
    with pytest.raises(ValidationError, match="under way"):
        payments.do_pay_invoice(invoice, actor=customer, return_url=PAY_RETURN)
    assert charges(standin) == before  # no second charge
    outcome = payments.reconcile(attempt)
    assert outcome.state == Payment.State.SUCCEEDED
    assert Payment.objects.get(pk=attempt.pk).external_id == made["pi"].id
    body = events_for(standin, made["pi"].id, "payment_intent.succeeded")[0]
    assert post_event(client, body, sign(body, WEBHOOK_SECRET)).status_code == 200
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == invoice.total
    assert invoice.payments.get().refund_due == 0


def test_an_answer_dropped_on_the_wire_blocks_pay_now_until_settled(invoice, customer, standin):
    save_card(customer)
    standin.drop_answers = 1
    with pytest.raises(ValidationError, match="not known yet"):
        payments.do_pay_invoice(invoice, actor=customer)
    before = charges(standin)
    with pytest.raises(ValidationError, match="under way"):
        payments.do_pay_invoice(invoice, actor=customer, return_url=PAY_RETURN)
    assert charges(standin) == before
    assert payments.reconcile(invoice.payments.get()).state == Payment.State.SUCCEEDED


# 2. Only an intent of the payment's amount and currency is applied ---------------------------


def test_reconcile_does_not_take_a_leftover_intent_of_another_amount(invoice, customer, standin):
    card = save_card(customer)
    pending = old(
        services.record_payment(
            invoice, amount=invoice.balance, method=Payment.Method.STRIPE, state="pending"
        )
    )
    assert small_intent(invoice, card).status == "succeeded"
    payments.reconcile(pending)
    invoice.refresh_from_db()
    pending.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and invoice.amount_paid == 0
    assert pending.state == Payment.State.FAILED and pending.external_id == ""


def test_return_address_with_a_leftover_intent_settles_nothing(invoice, customer, standin):
    card = save_card(customer)
    pending = services.record_payment(
        invoice, amount=invoice.balance, method=Payment.Method.STRIPE, state="pending"
    )
    small = small_intent(invoice, card, currency="eur", key="leftover-eur")
    page = login(customer).get(
        reverse("billing_payment_return", args=[invoice.uuid]) + f"?payment_intent={small.id}",
        follow=True,
    )
    assert b"not one of this invoice" in page.content
    invoice.refresh_from_db()
    pending.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and invoice.amount_paid == 0
    assert pending.state == Payment.State.PENDING and pending.external_id == ""


def test_an_intent_that_received_another_amount_is_flagged_not_settled(
    invoice, customer, billing_user, standin
):
    card = save_card(customer)
    small = small_intent(invoice, card, currency="eur", key="short-eur")  # took 0.01 EUR
    row = old(
        services.record_payment(
            invoice, amount=invoice.balance, method=Payment.Method.STRIPE, state="pending"
        )
    )
    Payment.objects.filter(pk=row.pk).update(external_id=small.id)
    outcome = payments.reconcile(row)
    row.refresh_from_db()
    invoice.refresh_from_db()
    assert outcome.state == Payment.State.PENDING and row.state == Payment.State.PENDING
    assert "not applied" in row.attention and invoice.amount_paid == 0
    assert AuditEntry.objects.filter(action="payment.mismatch", object_id=str(row.uuid)).exists()
    # Staff see it on the dunning queue; the light check leaves it to them.
    page = login(billing_user).get(reverse("billing_dunning"))
    assert b'data-testid="check-row"' in page.content and small.id.encode() in page.content
    asked = len(standin.requests)
    assert dunning.check_pending_card_payments() == 0 and len(standin.requests) == asked
    # Staff refunded the 0.01 at Stripe and close it: Pay and Void work again.
    answer = login(billing_user).post(
        reverse("billing_payment_refunded", args=[row.uuid]), {"reference": "re_small"}
    )
    assert answer.status_code == 302
    row.refresh_from_db()
    assert row.state == Payment.State.REFUNDED and row.attention == ""
    invoice.refresh_from_db()
    assert invoice.amount_paid == 0 and invoice.balance == invoice.total


def test_webhook_of_another_amount_for_the_attempt_is_flagged(invoice, customer, standin, client):
    card = save_card(customer)
    small = small_intent(invoice, card, currency="eur", key="hook-eur")
    row = services.record_payment(
        invoice, amount=invoice.balance, method=Payment.Method.STRIPE, state="pending"
    )
    Payment.objects.filter(pk=row.pk).update(external_id=small.id)
    body = events_for(standin, small.id, "payment_intent.succeeded")[0]
    answer = post_event(client, body, sign(body, WEBHOOK_SECRET))
    assert answer.status_code == 200 and b"not applied" in answer.content
    row.refresh_from_db()
    invoice.refresh_from_db()
    assert row.state == Payment.State.PENDING and row.attention
    assert invoice.amount_paid == 0


# 3 and 4. Failed 3-D Secure intents are canceled at Stripe -----------------------------------


def browser_confirm(standin, intent: dict) -> int:
    """What a browser with the client_secret from the return address could do."""
    data = urlencode({"key": PUBLISHABLE_KEY, "client_secret": intent["client_secret"]})
    request = urllib.request.Request(
        f"{standin.url}/v1/payment_intents/{intent['id']}/confirm", data=data.encode()
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status
    except HTTPError as exc:
        return exc.code


def test_a_failed_authentication_is_canceled_so_the_browser_cannot_confirm_it(
    invoice, customer, standin
):
    save_card(customer, THREE_DS)
    browser = login(customer)
    bank = pay_now(browser, invoice)["Refresh"].split("url=", 1)[1]
    back_to_panel(browser, press(bank, "Fail authentication"))
    payment = invoice.payments.get()
    assert payment.state == Payment.State.FAILED
    intent = standin.objects[payment.external_id]
    assert intent["status"] == "canceled"
    assert browser_confirm(standin, intent) == 400
    assert standin.objects[payment.external_id]["status"] == "canceled"


def test_the_standin_lets_a_browser_confirm_an_open_intent(invoice, customer, standin):
    """The stand-in is honest: an intent left requires_payment_method (not canceled) is
    confirmed again from a browser, which is why the panel cancels failed ones."""
    card = save_card(customer, THREE_DS)
    intent = stripe_client.charge(
        amount_cents=1250, currency="eur", customer_id=cards.ensure_customer(customer),
        payment_method=card.stripe_id, invoice_uuid=str(invoice.uuid), description="x",
        idempotency_key="open", return_url=PAY_RETURN,
    ).to_dict()  # fmt: skip
    standin.objects[intent["id"]]["status"] = "requires_payment_method"
    assert browser_confirm(standin, intent) == 200
    assert standin.objects[intent["id"]]["status"] == "requires_action"
    wrong = {**intent, "client_secret": "pi_x_secret_wrong"}
    assert browser_confirm(standin, wrong) == 401


def test_off_session_authentication_required_is_a_402_failed_and_canceled(
    invoice, customer, standin
):
    save_card(customer, THREE_DS)
    answer = login(customer).post(f"/api/v1/invoices/{invoice.uuid}/pay/")
    assert answer.status_code == 400 and "needs authentication" in answer.content.decode()
    payment = invoice.payments.get()
    assert payment.state == Payment.State.FAILED
    events = [json.loads(b)["type"] for b in events_for(standin, payment.external_id, "")] or [
        json.loads(b)["type"] for b, _ in standin.events
    ]
    assert "payment_intent.requires_action" not in events  # Stripe's 402, not a 200
    assert standin.objects[payment.external_id]["last_payment_error"]["code"] == (
        "authentication_required"
    )
    assert standin.objects[payment.external_id]["status"] == "canceled"


# 7. Refunds -----------------------------------------------------------------------------------


def overpaid(invoice, customer, admin_user) -> Payment:
    """Stripe took 12.50 after the invoice was paid by hand: 12.50 to refund."""
    card = save_card(customer)
    intent = small_intent(invoice, card, cents=1250, currency="eur", key="late")
    services.do_record_manual_payment(invoice, actor=admin_user, data={"amount": "12.50"})
    payment = payments.settle(
        intent.id, invoice_uuid=str(invoice.uuid), amount=Decimal("12.50"), currency="EUR"
    )
    assert payment.refund_due == Decimal("12.50")
    return payment


def test_staff_record_a_refund_and_the_queue_entry_goes(
    invoice, customer, admin_user, billing_user, reseller, standin
):
    payment = overpaid(invoice, customer, admin_user)
    url = reverse("billing_payment_refunded", args=[payment.uuid])
    for user in (customer, reseller):
        assert login(user).post(url, {"reference": "re_x"}).status_code == 404
    staff = login(billing_user)
    assert b'data-testid="refund-row"' in staff.get(reverse("billing_dunning")).content
    assert staff.post(url, {"reference": "re_123"}).status_code == 302
    payment.refresh_from_db()
    assert payment.refund_due == 0 and payment.refund_reference == "re_123"
    entry = AuditEntry.objects.get(action="payment.refunded", object_id=str(payment.uuid))
    assert entry.changes["refund_due"] == ["12.50", "0.00"]
    assert b'data-testid="refund-row"' not in staff.get(reverse("billing_dunning")).content
    with pytest.raises(ValidationError):  # nothing left to refund
        payments.do_record_refund(payment, actor=billing_user, data={"reference": "re_again"})


def test_stripe_refund_event_clears_refund_due(invoice, customer, admin_user, standin, client):
    payment = overpaid(invoice, customer, admin_user)
    stripe_client.client().v1.refunds.create(params={"payment_intent": payment.external_id})
    body = events_for(standin, payment.external_id, "charge.refunded")[0]
    answer = post_event(client, body, sign(body, WEBHOOK_SECRET))
    assert answer.status_code == 200 and answer.content == b"refunded"
    payment.refresh_from_db()
    assert payment.refund_due == 0 and payment.refund_reference.startswith("re_")
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID  # the hand payment still pays it


def test_refund_due_in_the_api_for_staff_only(invoice, customer, admin_user, billing_user):
    payment = overpaid(invoice, customer, admin_user)
    url = f"/api/v1/payments/{payment.uuid}/"
    staff = login(billing_user).get(url).json()
    assert staff["refund_due"] == "12.50" and staff["attention"] == ""
    mine = login(customer).get(url).json()
    assert mine["refund_due"] is None and mine["refund_reference"] is None


# 6. The dunning queue for resellers ----------------------------------------------------------


def test_dunning_queue_for_a_reseller_and_for_staff(
    admin_user, billing_user, reseller, customer, stripe_account, standin
):
    issue(customer, admin_user, issuer=reseller, due_days_ago=5)
    # The panel billed its customer (numbers are per issuer: told apart by the amount).
    issue(customer, admin_user, amount="99.00", due_days_ago=5)
    overpaid(issue(customer, admin_user), customer, admin_user)
    payments_views._count_rejected()
    page = login(reseller).get(reverse("billing_dunning"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "12.50 EUR" in text and "99.00 EUR" not in text
    assert 'data-testid="webhooks-rejected"' not in text
    assert 'data-testid="refunds-due"' not in text
    staff = login(billing_user).get(reverse("billing_dunning")).content.decode()
    assert "12.50 EUR" in staff and "99.00 EUR" in staff
    assert 'data-testid="webhooks-rejected"' in staff and 'data-testid="refunds-due"' in staff
    assert login(customer).get(reverse("billing_dunning")).status_code == 404


# 8. The bank's page is https ------------------------------------------------------------------


def test_authentication_url_is_https_unless_stripe_is_local(settings):
    intent = {"next_action": {"type": "redirect_to_url",
                              "redirect_to_url": {"url": "http://bank.example/3ds"}}}  # fmt: skip
    settings.PANEL_STRIPE_API_BASE = "https://api.stripe.com"
    assert payments._authentication_url(intent) == ""
    intent["next_action"]["redirect_to_url"]["url"] = "https://bank.example/3ds"
    assert payments._authentication_url(intent) == "https://bank.example/3ds"
    settings.PANEL_STRIPE_API_BASE = "http://127.0.0.1:8111"
    intent["next_action"]["redirect_to_url"]["url"] = "http://127.0.0.1:8111/3ds/pi_1"
    assert payments._authentication_url(intent) == "http://127.0.0.1:8111/3ds/pi_1"


# 5. The light check: no starvation ------------------------------------------------------------


def pending_rows(invoice, count: int, *, minutes_ago: int = 60, prefix="pi_missing") -> list:
    start = timezone.now() - timedelta(minutes=minutes_ago)
    return Payment.objects.bulk_create(
        Payment(
            invoice=invoice, amount=invoice.balance, currency=invoice.currency,
            method=Payment.Method.STRIPE, state=Payment.State.PENDING,
            external_id=f"{prefix}{n}", created_at=start + timedelta(seconds=n),
        )
        for n in range(count)
    )  # fmt: skip


def test_lookups_stripe_refuses_do_not_starve_a_younger_payment(
    invoice, customer, billing_user, standin
):
    card = save_card(customer)
    pending_rows(invoice, 101)  # Stripe answers 404 resource_missing for each
    paid = small_intent(invoice, card, cents=1250, currency="eur", key="the-last")
    last = Payment.objects.create(
        invoice=invoice, amount=invoice.balance, currency="EUR", method="stripe",
        state="pending", external_id=paid.id, created_at=timezone.now() - timedelta(minutes=11),
    )  # fmt: skip
    dunning.check_pending_card_payments()
    assert Payment.objects.get(pk=last.pk).state == Payment.State.PENDING
    dunning.check_pending_card_payments()
    assert Payment.objects.get(pk=last.pk).state == Payment.State.SUCCEEDED
    # The refused ones are flagged for staff, once each, and not asked about again.
    flagged = Payment.objects.filter(state="pending").exclude(attention="")
    assert flagged.count() == 101
    assert AuditEntry.objects.filter(action="payment.flagged").count() == 101
    asked = len(standin.requests)
    dunning.check_pending_card_payments()
    assert len(standin.requests) == asked
    page = login(billing_user).get(reverse("billing_dunning")).content.decode()
    assert page.count('data-testid="check-row"') == 101


def test_rows_that_stay_pending_go_to_the_back_of_the_line(invoice, monkeypatch):
    rows = pending_rows(invoice, 101, prefix="pi_waiting")
    checked = []

    def still_pending(payment, *, actor=None):
        checked.append(payment.pk)
        return payments.Outcome(payment, payment.state, "Waiting for the card's authentication.")

    monkeypatch.setattr(payments, "reconcile", still_pending)
    dunning.check_pending_card_payments()
    assert rows[-1].pk not in checked and len(checked) == 100
    checked.clear()
    dunning.check_pending_card_payments()
    assert checked[0] == rows[-1].pk  # never checked: first
