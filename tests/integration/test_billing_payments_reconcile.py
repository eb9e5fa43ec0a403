"""A card payment left pending (the panel died between recording the attempt and Stripe's
answer) is reconciled with Stripe, against the Stripe stand-in: automatically by the
10-minute light check, by staff with "Check with Stripe" and through the API. Also the
rejected-webhook counter on the dunning queue."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing import cards, dunning, payments, services, stripe_client, tasks
from billing.models import Invoice, Payment
from core.models import AuditEntry
from tests.conftest import login
from tests.integration.conftest import free_port
from tests.integration.stripe_standin import sign
from tests.integration.test_billing_payments import (
    post_event,
    save_card,
)

pytestmark = pytest.mark.django_db


def crashed_attempt(invoice, *, minutes_ago: int = 11) -> Payment:
    """What a crash leaves: the PENDING attempt do_pay_invoice records before calling Stripe,
    without the PaymentIntent id (the process died before the answer was written)."""
    payment = services.record_payment(
        invoice, amount=invoice.balance, method=Payment.Method.STRIPE, state="pending"
    )
    Payment.objects.filter(pk=payment.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    payment.refresh_from_db()
    return payment


def charge_at_stripe(invoice, card, attempt: int = 1):
    """Stripe did charge: the request of that attempt reached it (and its webhook is lost)."""
    return stripe_client.charge(
        amount_cents=1250, currency="EUR", customer_id=cards.ensure_customer(invoice.customer),
        payment_method=card.stripe_id, invoice_uuid=str(invoice.uuid),
        description=f"Invoice {invoice.number}",
        idempotency_key=payments.idempotency_key(
            invoice, attempt, card=card, cents=1250, on_session=False
        ),
    )  # fmt: skip


def test_crash_after_stripe_charged_is_settled_by_the_light_check(
    invoice, customer, admin_user, standin
):
    card = save_card(customer)
    payment = crashed_attempt(invoice)
    intent = charge_at_stripe(invoice, card)
    # Blocked while it stands: Pay and Void both refuse.
    with pytest.raises(ValidationError, match="under way"):
        payments.do_pay_invoice(invoice, actor=customer)
    with pytest.raises(ValidationError, match="under way"):
        services.do_void_invoice(invoice, actor=admin_user, reason="x")
    assert tasks.reactivate_paid() == "1 pending card payments ended, 0 reactivated"
    listed = [r for r in standin.requests if r[0] == "GET" and r[1] == "/v1/payment_intents"]
    assert listed[-1][2]["customer"] == cards.ensure_customer(customer)
    payment.refresh_from_db()
    assert payment.state == Payment.State.SUCCEEDED and payment.external_id == intent.id
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == Decimal("12.50")
    entry = AuditEntry.objects.get(action="payment.reconcile", object_id=str(payment.uuid))
    assert entry.changes["result"] == "succeeded" and entry.actor_id is None
    # Its webhook arriving late changes nothing.
    body, signature = next(e for e in reversed(standin.events) if intent.id.encode() in e[0])
    assert post_event(login(customer), body, signature).content == b"paid"
    assert invoice.payments.count() == 1


def test_crash_before_stripe_got_the_request_frees_pay_and_void(
    invoice, customer, billing_user, standin
):
    card = save_card(customer)  # a Stripe customer, but no charge ever reached Stripe
    payment = crashed_attempt(invoice, minutes_ago=2)
    staff = login(billing_user)
    page = staff.get(invoice.get_absolute_url()).content
    assert b'data-testid="reconcile"' in page and b"Check with Stripe" in page
    assert b'data-testid="reconcile"' not in login(customer).get(invoice.get_absolute_url()).content
    check = reverse("billing_payment_reconcile", args=[payment.uuid])
    # Too young to tell: it may be under way; left alone.
    answer = staff.post(check, follow=True)
    assert b"Stripe has no record of this charge yet" in answer.content
    payment.refresh_from_db()
    assert payment.state == Payment.State.PENDING
    # Past the safe age: nothing was taken, the attempt failed.
    Payment.objects.filter(pk=payment.pk).update(
        created_at=timezone.now() - payments.STUCK_AFTER - timedelta(seconds=1)
    )
    answer = staff.post(check, follow=True)
    assert b"Stripe has no record of this charge; nothing was taken." in answer.content
    payment.refresh_from_db()
    assert payment.state == Payment.State.FAILED and payment.external_id == ""
    assert payment.failure_message == payments.NO_RECORD
    results = list(
        AuditEntry.objects.filter(action="payment.reconcile", object_id=str(payment.uuid))
        .order_by("id")
        .values_list("changes__result", "actor_id")
    )
    assert results == [("pending", billing_user.pk), ("failed", billing_user.pk)]
    assert AuditEntry.objects.filter(action="payment.failed", object_id=str(payment.uuid)).exists()
    # Pay works again (a new attempt, a new key) and takes the money once.
    payments.do_pay_invoice(invoice, actor=customer, card=card)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == Decimal("12.50")
    keys = [r[3].get("Idempotency-Key") for r in standin.requests if r[1] == "/v1/payment_intents"]
    assert keys[-1] == f"panel-invoice-{invoice.uuid}-2-{card.stripe_id}-1250"


def test_crash_without_a_stripe_customer_is_failed_once_old(invoice, customer, admin_user):
    payment = crashed_attempt(invoice)
    outcome = payments.reconcile(payment, actor=admin_user)
    assert outcome.state == Payment.State.FAILED and outcome.message == payments.NO_RECORD
    services.do_void_invoice(invoice, actor=admin_user, reason="customer left")


def test_intents_recorded_on_other_attempts_are_not_taken(invoice, customer, admin_user, standin):
    save_card(customer, "pm_card_chargeDeclined")
    with pytest.raises(ValidationError, match="declined"):
        payments.do_pay_invoice(invoice, actor=customer)
    declined = Payment.objects.get(invoice=invoice)
    payment = crashed_attempt(invoice)
    outcome = payments.reconcile(payment, actor=admin_user)
    # The declined intent belongs to attempt 1: Stripe has nothing for this one.
    assert outcome.state == Payment.State.FAILED and outcome.message == payments.NO_RECORD
    payment.refresh_from_db()
    assert payment.external_id == "" and declined.external_id.startswith("pi_")


def test_processing_stays_pending_with_its_id_until_stripe_settles(
    invoice, customer, admin_user, standin
):
    card = save_card(customer)
    payment = crashed_attempt(invoice)
    intent = charge_at_stripe(invoice, card)
    standin.objects[intent.id].update(status="processing", amount_received=0)
    outcome = payments.reconcile(payment, actor=admin_user)
    assert outcome.state == Payment.State.PENDING and "still processing" in outcome.message
    payment.refresh_from_db()
    assert payment.state == Payment.State.PENDING and payment.external_id == intent.id
    # Next time it is read by its id, not listed.
    standin.objects[intent.id].update(status="succeeded", amount_received=1250)
    calls = len(standin.requests)
    assert payments.reconcile(payment, actor=admin_user).state == Payment.State.SUCCEEDED
    assert [r[:2] for r in standin.requests[calls:]] == [
        ("GET", f"/v1/payment_intents/{intent.id}")
    ]
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID


@pytest.mark.parametrize("status", ["canceled", "requires_payment_method"])
def test_an_intent_that_took_nothing_fails_the_attempt(
    invoice, customer, admin_user, standin, status
):
    card = save_card(customer)
    payment = crashed_attempt(invoice)
    intent = charge_at_stripe(invoice, card)
    standin.objects[intent.id].update(status=status, amount_received=0)
    outcome = payments.reconcile(payment, actor=admin_user)
    assert outcome.state == Payment.State.FAILED
    payment.refresh_from_db()
    assert payment.external_id == intent.id and payment.state == Payment.State.FAILED
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED


def test_stripe_out_of_reach_leaves_the_row_untouched(
    invoice, customer, billing_user, standin, settings, caplog
):
    card = save_card(customer)
    payment = crashed_attempt(invoice)
    charge_at_stripe(invoice, card)
    settings.PANEL_STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    answer = login(billing_user).post(
        reverse("billing_payment_reconcile", args=[payment.uuid]), follow=True
    )
    assert b"Stripe cannot be reached just now; the payment is left as it is." in answer.content
    before = Payment.objects.filter(pk=payment.pk).values().get()
    assert before["state"] == Payment.State.PENDING and before["external_id"] == ""
    entry = AuditEntry.objects.get(action="payment.reconcile")
    assert entry.changes["result"] == "error"
    # The light check: logged, tried again next round, nothing audited or changed.
    assert tasks.reactivate_paid() == "0 reactivated"
    after = Payment.objects.filter(pk=payment.pk).values().get()
    assert after.pop("last_checked_at") > before.pop("last_checked_at")  # to the line's end
    assert after == before
    assert AuditEntry.objects.filter(action="payment.reconcile").count() == 1
    assert any("not checked" in r.getMessage() for r in caplog.records)
    settings.PANEL_STRIPE_API_BASE = standin.url
    assert tasks.reactivate_paid().startswith("1 pending card payments ended")
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID


def test_light_check_finds_old_pending_card_payments_in_two_queries(invoice, customer):
    # A manual payment (recorded first: none is taken while a card payment is pending).
    services.record_payment(invoice, amount=Decimal("1.00"), method="manual", external_id="b-1")
    crashed_attempt(invoice, minutes_ago=1)  # too young: not even looked at
    with CaptureQueriesContext(connection) as queries:
        assert dunning.check_pending_card_payments() == 0
    # Never checked ones, then the least recently checked (no NULLS FIRST index on SQLite).
    assert len(queries) == 2


def test_api_reconcile_for_staff_only(invoice, customer, billing_user, mallory, reseller, standin):
    card = save_card(customer)
    payment = crashed_attempt(invoice)
    intent = charge_at_stripe(invoice, card)
    url = f"/api/v1/payments/{payment.uuid}/reconcile/"
    for user in (customer, reseller, mallory):  # the payment's owner sees it, may not check
        assert login(user).post(url).status_code == 404, user
    answer = login(billing_user).post(url)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["state"] == "succeeded" and body["payment"]["uuid"] == str(payment.uuid)
    assert Payment.objects.get(pk=payment.pk).external_id == intent.id
    # Not pending any more: refused, with the reason.
    again = login(billing_user).post(url)
    assert again.status_code == 400 and "Only a pending card payment" in again.content.decode()


def test_a_manual_payment_is_not_checked_with_stripe(invoice, billing_user, standin):
    manual = services.record_payment(invoice, amount=Decimal("1.00"), method="manual")
    calls = len(standin.requests)
    answer = login(billing_user).post(f"/api/v1/payments/{manual.uuid}/reconcile/")
    assert answer.status_code == 400 and len(standin.requests) == calls
    assert not AuditEntry.objects.filter(action="payment.reconcile").exists()


def test_dunning_queue_shows_rejected_webhook_posts(invoice, billing_user, client):
    queue = reverse("billing_dunning")
    staff = login(billing_user)
    assert b'data-testid="webhooks-rejected"' not in staff.get(queue).content
    body = b'{"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": {}}}'
    for signature in (sign(body, "whsec_wrong"), "", "t=1,v1=00"):
        assert post_event(client, body, signature).status_code == 400
    page = staff.get(queue).content.decode()
    assert "3 Stripe webhook posts rejected in the last hour: check the signing secret" in page
    # Counted per minute over a sliding hour: posts from 61 minutes ago have dropped out.
    from django.core.cache import cache

    from billing import payments_views

    cache.clear()
    old = (timezone.now() - timedelta(minutes=61)).strftime("%Y%m%d%H%M")
    cache.set(payments_views.REJECTED_KEY.format(minute=old), 5)
    recent = (timezone.now() - timedelta(minutes=59)).strftime("%Y%m%d%H%M")
    cache.set(payments_views.REJECTED_KEY.format(minute=recent), 2)
    assert payments_views.rejected_last_hour() == 2
