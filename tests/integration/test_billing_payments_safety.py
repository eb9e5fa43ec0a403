"""Card payments when things go wrong, against the Stripe stand-in: amounts converted exactly
(and currencies without hundredths refused before Stripe is called), money Stripe takes for
an invoice paid, credited or voided meanwhile (recorded, flagged to refund, listed for
staff), webhook events that can never apply (answered 200, not retried for days), a charge
whose answer is lost (pending until reconciled, never "nothing was charged"), the lock
order, saved cards and the idempotency key."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests
import stripe
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from billing import cards, payments, services, stripe_client
from billing.models import UNSUPPORTED_CURRENCIES, Invoice, Payment
from billing.payment_models import PaymentCard, StripeEvent
from core.models import AuditEntry
from tests.conftest import login
from tests.integration.conftest import free_port
from tests.integration.stripe_standin import sign
from tests.integration.test_billing_payments import (
    WEBHOOK_SECRET,
    post_event,
    save_card,
)

pytestmark = pytest.mark.django_db


def charge_elsewhere(invoice, card, key: str = "elsewhere"):
    """A charge the panel's request did not see answered (its event is what tells)."""
    return stripe_client.charge(
        amount_cents=1250, currency="EUR", customer_id=cards.ensure_customer(invoice.customer),
        payment_method=card.stripe_id, invoice_uuid=str(invoice.uuid), description="x",
        idempotency_key=f"{key}-{invoice.uuid}",
    )  # fmt: skip


def event(kind: str, obj: dict, event_id: str = "evt_1") -> bytes:
    return json.dumps(
        {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}
    ).encode()


# 1. Minor units ---------------------------------------------------------------------------


def test_minor_units_are_exact():
    assert payments.minor_units(Decimal("12.50"), "EUR") == 1250
    assert payments.minor_units(Decimal("0.29"), "usd") == 29
    assert payments.major_units(1250, "EUR") == Decimal("12.50")
    # A fraction of a cent is refused, never truncated (12.345 was charged as 12.34).
    with pytest.raises(ValidationError, match="whole number of cents"):
        payments.minor_units(Decimal("12.345"), "EUR")
    with pytest.raises(TypeError):
        payments.minor_units(0.29, "EUR")  # a float (0.29 * 100 is 28.999...)
    for currency in ("JPY", "KWD", "BHD", "ISK"):
        assert currency in UNSUPPORTED_CURRENCIES
        with pytest.raises(ValidationError, match="cannot be paid by card"):
            payments.minor_units(Decimal("100.00"), currency)
        with pytest.raises(ValidationError, match="cannot be paid by card"):
            payments.major_units(100, currency)
    with pytest.raises(ValidationError):
        payments.major_units("12.5", "EUR")


@given(cents=st.integers(min_value=0, max_value=10**14 - 1))
def test_minor_and_major_units_round_trip(cents):
    amount = payments.major_units(cents, "EUR")
    assert amount == Decimal(cents) / 100 and amount.as_tuple().exponent == -2
    assert payments.minor_units(amount, "EUR") == cents


@pytest.mark.parametrize("currency", ["JPY", "KWD"])
def test_a_legacy_invoice_in_a_currency_without_hundredths_is_not_charged(
    invoice, customer, standin, currency
):
    card = save_card(customer)
    with connection.cursor() as cursor:  # stored before the rule (issued invoices are frozen)
        cursor.execute(
            "UPDATE billing_invoice SET currency = %s WHERE id = %s", [currency, invoice.pk]
        )
    invoice.refresh_from_db()
    calls = len(standin.requests)
    with pytest.raises(ValidationError, match="cannot be paid by card"):
        payments.do_pay_invoice(invoice, actor=customer, card=card)
    assert len(standin.requests) == calls  # nothing sent to Stripe
    assert not invoice.payments.exists()


def test_webhook_amount_converted_exactly_and_other_currencies_not_guessed(
    invoice, customer, client
):
    obj = {"id": "pi_kwd", "object": "payment_intent", "amount": 1250, "amount_received": 1250,
           "currency": "kwd", "metadata": {"panel_invoice": str(invoice.uuid)}}  # fmt: skip
    body = event("payment_intent.succeeded", obj, "evt_kwd")
    answer = post_event(client, body, sign(body, WEBHOOK_SECRET))
    # Not retried for days: recorded with the reason, for staff, and not applied.
    assert answer.status_code == 200 and answer.content.startswith(b"not applied")
    invoice.refresh_from_db()
    assert invoice.amount_paid == 0 and not invoice.payments.exists()
    assert AuditEntry.objects.filter(action="payment.unmatched").exists()
    obj.update(id="pi_eur", currency="eur", amount=1249, amount_received=1249)
    body = event("payment_intent.succeeded", obj, "evt_eur")
    assert post_event(client, body, sign(body, WEBHOOK_SECRET)).content == b"paid"
    invoice.refresh_from_db()
    assert invoice.amount_paid == Decimal("12.49") and invoice.state == Invoice.State.ISSUED


# 2. A late card success --------------------------------------------------------------------


def test_no_manual_payment_while_a_card_payment_is_pending(invoice, billing_user):
    payments._pending(invoice, "pi_under_way", invoice.balance, actor=None)
    with pytest.raises(ValidationError, match="card payment of this invoice is under way"):
        services.do_record_manual_payment(
            invoice, actor=billing_user, data={"amount": "12.50", "external_id": "bank-1"}
        )
    invoice.refresh_from_db()
    assert invoice.amount_paid == 0


def test_card_success_on_an_invoice_paid_meanwhile_is_flagged_for_a_refund(
    invoice, customer, billing_user, client
):
    card = save_card(customer)
    # The customer paid by bank transfer, and the card charge (made elsewhere) succeeds too.
    services.do_record_manual_payment(invoice, actor=billing_user, data={"amount": "12.50"})
    intent = charge_elsewhere(invoice, card)
    answer = payments.handle_event(
        {
            "id": "evt_late",
            "type": "payment_intent.succeeded",
            "data": {
                "object": {
                    "id": intent.id,
                    "amount": 1250,
                    "amount_received": 1250,
                    "currency": "eur",
                    "metadata": {"panel_invoice": str(invoice.uuid)},
                }
            },
        }  # fmt: skip
    )
    assert answer.startswith("needs a refund: 12.50 EUR")
    invoice.refresh_from_db()
    assert invoice.amount_paid == Decimal("12.50") and invoice.state == Invoice.State.PAID
    late = invoice.payments.get(external_id=intent.id)
    assert late.state == Payment.State.SUCCEEDED and late.refund_due == Decimal("12.50")
    entry = AuditEntry.objects.get(action="payment.overpaid", object_id=str(late.uuid))
    assert entry.changes["refund_due"] == [None, "12.50"]
    page = login(billing_user).get(reverse("billing_dunning")).content.decode()
    assert 'data-testid="refunds-due"' in page and "needs a refund: 12.50 EUR" in page


def test_card_success_beyond_a_credited_balance_applies_only_what_is_owed(
    invoice, customer, admin_user
):
    card = save_card(customer)
    intent = charge_elsewhere(invoice, card)
    services.do_create_credit_note(invoice, actor=admin_user, amount="2.50", reason="goodwill")
    invoice.refresh_from_db()
    owed = invoice.balance
    assert owed < Decimal("12.50")
    payment = payments.settle(intent.id, invoice_uuid=str(invoice.uuid), amount=Decimal("12.50"))
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.balance == 0
    assert payment.amount == Decimal("12.50") and payment.refund_due == Decimal("12.50") - owed


def test_card_success_on_an_invoice_voided_meanwhile_is_recorded_not_a_500(
    invoice, customer, admin_user, billing_user, client, standin
):
    card = save_card(customer)
    charge_elsewhere(invoice, card)
    body, signature = standin.events[-1]
    services.do_void_invoice(invoice, actor=admin_user, reason="ordered twice")
    answer = post_event(client, body, signature)
    assert answer.status_code == 200
    assert answer.content == b"needs a refund: 12.50 EUR not owed (invoice void)"
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.VOID and invoice.amount_paid == 0
    payment = invoice.payments.get()
    assert payment.state == Payment.State.SUCCEEDED and payment.refund_due == Decimal("12.50")
    assert StripeEvent.objects.get(invoice=invoice).result.startswith("needs a refund")
    assert post_event(client, body, signature).content == b"duplicate"
    page = login(billing_user).get(reverse("billing_dunning")).content.decode()
    assert "needs a refund: 12.50 EUR" in page and invoice.number in page
    # Customers do not reach the staff queue.
    assert login(customer).get(reverse("billing_dunning")).status_code == 404


def test_refund_list_on_the_queue_keeps_a_flat_query_count(invoice, customer, billing_user):
    from tests.conftest import queries_for

    staff = login(billing_user)
    payments.settle("pi_one", invoice_uuid=str(invoice.uuid), amount=Decimal("12.50"))
    payments.settle("pi_two", invoice_uuid=str(invoice.uuid), amount=Decimal("12.50"))
    few = queries_for(staff, reverse("billing_dunning"))
    for n in range(3):
        payments.settle(f"pi_more{n}", invoice_uuid=str(invoice.uuid), amount=Decimal("1.00"))
    assert queries_for(staff, reverse("billing_dunning")) == few
    assert staff.get(reverse("billing_dunning")).content.count(b'data-testid="refund-row"') == 4


@pytest.mark.parametrize("raw", ["not-a-uuid", "12345", "", None])
def test_an_event_naming_no_invoice_of_this_panel_is_answered_200(stripe_account, client, raw):
    obj = {"id": "pi_elsewhere", "object": "payment_intent", "amount": 100, "currency": "eur",
           "metadata": {"panel_invoice": raw} if raw is not None else {}}  # fmt: skip
    body = event("payment_intent.succeeded", obj, f"evt_{raw}")
    answer = post_event(client, body, sign(body, WEBHOOK_SECRET))
    assert answer.status_code == 200 and answer.content == b"no invoice of this panel"
    assert StripeEvent.objects.get(event_id=f"evt_{raw}").result == "no invoice of this panel"
    assert not Payment.objects.exists()


# 3. Lock order ----------------------------------------------------------------------------


def test_failing_a_payment_locks_the_invoice_before_the_payment(invoice):
    """settle and reconcile lock the invoice, then the payment; so must _failed (it locked
    the payment first: two events of one invoice could deadlock)."""
    payments._pending(invoice, "pi_fails", invoice.balance, actor=None)
    with CaptureQueriesContext(connection) as queries:
        payments._failed(invoice, "pi_fails", "declined", invoice.balance)
    reads = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    tables = [("invoice" if '"billing_invoice"' in sql.split("WHERE")[0] else
               "payment" if '"billing_payment"' in sql.split("WHERE")[0] else "other")
              for sql in reads]  # fmt: skip
    assert tables.index("invoice") < tables.index("payment")
    if connection.features.has_select_for_update:
        assert "FOR UPDATE" in reads[tables.index("invoice")]
    assert Payment.objects.get(external_id="pi_fails").state == Payment.State.FAILED


# 4. A charge whose answer is lost ---------------------------------------------------------


def test_a_lost_answer_is_not_nothing_was_charged_and_stays_pending(
    invoice, customer, standin, client
):
    card = save_card(customer)
    charges = len([r for r in standin.requests if r[1] == "/v1/payment_intents"])
    standin.drop_answers = 1  # Stripe charges, the answer never comes back
    browser = login(customer)
    answer = browser.post(reverse("billing_pay_invoice", args=[invoice.uuid]), follow=True)
    content = answer.content.decode()
    assert "result of the payment is not known yet" in content and "do not pay twice" in content
    assert "nothing was charged" not in content
    attempt = invoice.payments.get()
    assert attempt.state == Payment.State.PENDING and attempt.external_id == ""
    assert AuditEntry.objects.filter(action="payment.unknown", object_id=str(attempt.uuid))
    # A second "Pay now" is refused while it is unknown: no second charge.
    answer = browser.post(reverse("billing_pay_invoice", args=[invoice.uuid]), follow=True)
    assert b"under way" in answer.content
    assert len([r for r in standin.requests if r[1] == "/v1/payment_intents"]) == charges + 1
    # Stripe's event claims the attempt and settles it.
    body, signature = standin.events[-1]
    assert post_event(client, body, signature).content == b"paid"
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.payments.count() == 1
    assert invoice.payments.get().pk == attempt.pk and card.pk


def test_connection_errors_told_apart():
    def raising(cause):
        def call():
            try:
                raise cause
            except Exception as exc:
                raise stripe.APIConnectionError("network", should_retry=True) from exc

        return call

    with pytest.raises(stripe_client.PaymentError) as never:
        stripe_client._call(raising(requests.exceptions.ConnectTimeout("connect")))
    assert not never.value.unknown and "nothing was charged" in str(never.value)
    for cause in (requests.exceptions.ReadTimeout("read"), requests.exceptions.ConnectionError(
            ConnectionResetError("reset by peer"))):  # fmt: skip
        with pytest.raises(stripe_client.PaymentError) as lost:
            stripe_client._call(raising(cause))
        assert lost.value.unknown and "nothing was charged" not in str(lost.value)

    def rate_limited():
        raise stripe.RateLimitError("slow down", http_status=429)

    with pytest.raises(stripe_client.PaymentError) as limited:
        stripe_client._call(rate_limited)
    assert not limited.value.unknown and "nothing was charged" in str(limited.value)


def test_a_refused_connection_still_says_nothing_was_charged(invoice, customer, settings):
    card = save_card(customer)
    settings.PANEL_STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ValidationError, match="nothing was charged"):
        payments.do_pay_invoice(invoice, actor=customer, card=card)
    assert not invoice.payments.exists()  # forgotten: Pay works at once


# 5. Cards ---------------------------------------------------------------------------------


def test_saving_a_card_again_keeps_it_the_default(customer, stripe_account):
    setup = cards.start_card_setup(customer, actor=customer)
    stripe_client.confirm_setup_intent(setup["setup_intent"], "pm_card_visa")
    first = cards.do_save_card(customer, actor=customer, setup_intent=setup["setup_intent"])
    assert first.is_default
    # The form resubmitted: the same SetupIntent, the same card.
    again = cards.do_save_card(customer, actor=customer, setup_intent=setup["setup_intent"])
    assert again.pk == first.pk and again.is_default
    assert PaymentCard.objects.get(user=customer).is_default
    customer.billing_profile.refresh_from_db()
    assert customer.billing_profile.stripe_payment_method_id == first.stripe_id
    assert AuditEntry.objects.filter(action="payment_card.add").count() == 1


def test_removing_another_card_keeps_the_default(customer, stripe_account):
    default = save_card(customer)
    other = save_card(customer, "pm_card_mastercard")
    newest = save_card(customer, "pm_card_mastercard")
    assert not other.is_default and not newest.is_default
    cards.do_remove_card(other, actor=customer)
    customer.billing_profile.refresh_from_db()
    # Not the newest card: the default one stays the profile's payment method.
    assert customer.billing_profile.stripe_payment_method_id == default.stripe_id
    assert PaymentCard.objects.get(is_default=True).pk == default.pk
    # Removing the default one makes the next the default, then none.
    cards.do_remove_card(newest, actor=customer)
    third = save_card(customer, "pm_card_mastercard")
    cards.do_remove_card(default, actor=customer)
    customer.billing_profile.refresh_from_db()
    assert customer.billing_profile.stripe_payment_method_id == third.stripe_id
    assert PaymentCard.objects.get(user=customer).is_default
    cards.do_remove_card(PaymentCard.objects.get(user=customer), actor=customer)
    customer.billing_profile.refresh_from_db()
    assert customer.billing_profile.stripe_payment_method_id == ""


# 6. The idempotency key -------------------------------------------------------------------


def test_the_key_names_the_card_and_the_amount(invoice, customer, admin_user, standin, settings):
    visa = save_card(customer)
    mastercard = save_card(customer, "pm_card_mastercard")
    settings.PANEL_STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"  # never reached
    with pytest.raises(ValidationError, match="nothing was charged"):
        payments.do_pay_invoice(invoice, actor=customer, card=visa)
    settings.PANEL_STRIPE_API_BASE = standin.url
    # Meanwhile the balance changed; the customer picks the other card: a new request.
    services.do_create_credit_note(invoice, actor=admin_user, amount="2.50", reason="goodwill")
    invoice.refresh_from_db()
    cents = payments.minor_units(invoice.balance, "EUR")
    payments.do_pay_invoice(invoice, actor=customer, card=mastercard)
    charge = [r for r in standin.requests if r[1] == "/v1/payment_intents"][-1]
    assert charge[3]["Idempotency-Key"] == (
        f"panel-invoice-{invoice.uuid}-1-{mastercard.stripe_id}-{cents}"
    )
    assert charge[2]["payment_method"] == mastercard.stripe_id
    assert charge[2]["amount"] == str(cents)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
