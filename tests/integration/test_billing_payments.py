"""Card payments through the official ``stripe`` library against the Stripe stand-in (a real
HTTP server on loopback speaking Stripe's API and signing webhooks as Stripe does): a card
saved with a SetupIntent, an invoice paid end to end, a declined card, replayed and forged
webhooks, and Stripe out of reach."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse

from billing import cards, payments, services, stripe_client
from billing.models import Invoice, Payment
from billing.payment_models import PaymentCard, StripeAccount, StripeEvent
from core.models import AuditEntry
from tests.conftest import login
from tests.integration.conftest import free_port
from tests.integration.stripe_fixtures import API_KEY, WEBHOOK_SECRET
from tests.integration.stripe_standin import sign

pytestmark = pytest.mark.django_db

WEBHOOK = "/billing/payments/stripe/webhook/"
PAYMENT_INTENTS = "/v1/payment_intents"


def save_card(customer, test_card: str = "pm_card_visa") -> PaymentCard:
    """What the portal does: a SetupIntent, confirmed by Stripe.js (here: by the API with a
    test card), then saved by the panel."""
    setup = cards.start_card_setup(customer, actor=customer)
    stripe_client.confirm_setup_intent(setup["setup_intent"], test_card)
    return cards.do_save_card(customer, actor=customer, setup_intent=setup["setup_intent"])


def post_event(client, body: bytes, signature: str):
    return client.post(
        WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
    )


def test_secrets_are_encrypted_at_rest(stripe_account):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret_key, webhook_secret FROM billing_stripeaccount WHERE id = %s",
            [stripe_account.pk],
        )
        stored = cursor.fetchone()
    assert API_KEY not in stored[0] and WEBHOOK_SECRET not in stored[1]
    assert StripeAccount.objects.get().secret_key == API_KEY


def test_card_saved_through_the_portal_and_invoice_paid_end_to_end(invoice, customer, standin):
    client = login(customer)
    # The page Stripe.js runs on, then the SetupIntent it confirms, then the save.
    page = client.get(reverse("billing_payment_methods"))
    assert page.status_code == 200 and b"pk_test_panel" in page.content
    assert "https://js.stripe.com" in page["Content-Security-Policy"]
    setup = client.post(reverse("billing_card_setup")).json()
    assert setup["client_secret"].startswith(setup["setup_intent"])
    stripe_client.confirm_setup_intent(setup["setup_intent"], "pm_card_visa")  # Stripe.js
    client.post(reverse("billing_card_save"), {"setup_intent": setup["setup_intent"]})
    card = PaymentCard.objects.get(user=customer)
    assert (card.brand, card.last4, card.is_default) == ("visa", "4242", True)
    assert customer.billing_profile.stripe_customer_id.startswith("cus_")
    assert b"Visa ending 4242" in client.get(reverse("billing_payment_methods")).content

    invoice_page = client.get(invoice.get_absolute_url()).content
    assert b'data-testid="pay-now"' in invoice_page and b"Pay now (12.50 EUR)" in invoice_page
    answer = client.post(reverse("billing_pay_invoice", args=[invoice.uuid]))
    assert answer.status_code == 302 and answer["Location"] == invoice.get_absolute_url()
    assert b'data-testid="pay-now"' not in client.get(invoice.get_absolute_url()).content
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == Decimal("12.50")
    payment = Payment.objects.get(invoice=invoice)
    assert payment.method == "stripe" and payment.state == Payment.State.SUCCEEDED
    charge = [r for r in standin.requests if r[1] == "/v1/payment_intents"][-1]
    assert charge[2]["amount"] == "1250" and charge[2]["currency"] == "eur"
    # The attempt, the card and the amount (in cents) name the request.
    assert charge[3]["Idempotency-Key"] == (
        f"panel-invoice-{invoice.uuid}-1-{card.stripe_id}-1250-on-session"
    )
    assert charge[2]["metadata"]["panel_invoice"] == str(invoice.uuid)

    # Stripe's webhook for the same PaymentIntent arrives afterwards: nothing changes.
    body, signature = standin.events[-1]
    assert post_event(client, body, signature).content == b"paid"
    invoice.refresh_from_db()
    assert invoice.amount_paid == Decimal("12.50") and invoice.payments.count() == 1
    assert (
        AuditEntry.objects.filter(action="invoice.paid", object_id=str(invoice.uuid)).count() == 1
    )
    # Paying again is refused: nothing is due.
    client.post(reverse("billing_pay_invoice", args=[invoice.uuid]))
    assert invoice.payments.count() == 1


def test_declined_card_marks_the_attempt_failed_and_not_the_invoice(invoice, customer, standin):
    save_card(customer, "pm_card_chargeDeclined")
    client = login(customer)
    answer = client.post(reverse("billing_pay_invoice", args=[invoice.uuid]), follow=True)
    assert b"Your card was declined." in answer.content
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and invoice.amount_paid == 0
    failed = Payment.objects.get(invoice=invoice)
    assert failed.state == Payment.State.FAILED and "declined" in failed.failure_message
    # The payment_failed webhook changes nothing more; a new card pays with a new key.
    body, signature = standin.events[-1]
    assert b"payment_intent.payment_failed" in body
    assert post_event(client, body, signature).content == b"failed"
    declined = PaymentCard.objects.get(user=customer)
    card = save_card(customer, "pm_card_visa")
    payments.do_pay_invoice(invoice, actor=customer, card=card)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    keys = [r[3]["Idempotency-Key"] for r in standin.requests if r[1] == "/v1/payment_intents"]
    # The portal's attempt is on session, the second (the service, as the API) off session.
    assert keys[-2:] == [
        f"panel-invoice-{invoice.uuid}-1-{declined.stripe_id}-1250-on-session",
        f"panel-invoice-{invoice.uuid}-2-{card.stripe_id}-1250",
    ]


def test_webhook_alone_settles_once_replays_change_nothing(invoice, customer, standin, client):
    card = save_card(customer)
    # A charge made outside this request (say, the panel died before hearing the answer):
    # only the webhook tells the panel.
    stripe_client.charge(
        amount_cents=1250, currency="EUR", customer_id=cards.ensure_customer(customer),
        payment_method=card.stripe_id, invoice_uuid=str(invoice.uuid), description="x",
        idempotency_key="elsewhere-1",
    )  # fmt: skip
    body, signature = standin.events[-1]
    assert post_event(client, body, signature).content == b"paid"
    assert post_event(client, body, signature).content == b"duplicate"
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == Decimal("12.50")
    assert invoice.payments.count() == 1
    assert StripeEvent.objects.filter(invoice=invoice).count() == 1


def test_forged_stale_and_unknown_webhooks(invoice, client, standin, caplog):
    body = (
        b'{"id": "evt_forged", "object": "event", "type": "payment_intent.succeeded", '
        b'"data": {"object": {"id": "pi_forged", "object": "payment_intent", "amount": 1250, '
        b'"amount_received": 1250, "metadata": {"panel_invoice": "%s"}}}}'
        % str(invoice.uuid).encode()
    )
    assert post_event(client, body, sign(body, "whsec_someone_else")).status_code == 400
    assert post_event(client, body, "").status_code == 400
    assert post_event(client, body, sign(body, WEBHOOK_SECRET, timestamp=1)).status_code == 400
    tampered = body.replace(b"1250", b"9999")
    assert post_event(client, tampered, sign(body, WEBHOOK_SECRET)).status_code == 400
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and not invoice.payments.exists()
    # Logged and counted, not audited: forgeries must not flood (and lock) the audit chain.
    assert not AuditEntry.objects.filter(action="stripe.webhook.rejected").exists()
    rejected = [r for r in caplog.records if "stripe webhook rejected" in r.getMessage()]
    assert len(rejected) == 4 and all(r.levelname == "WARNING" for r in rejected)
    assert "(4 in the last hour)" in rejected[-1].getMessage()
    unknown = (
        b'{"id": "evt_other", "object": "event", "type": "customer.created", '
        b'"data": {"object": {"id": "cus_1"}}}'
    )
    answer = post_event(client, unknown, sign(unknown, WEBHOOK_SECRET))
    assert answer.status_code == 200 and answer.content == b"ignored"


def test_stripe_out_of_reach_gives_a_clear_error_and_marks_nothing(invoice, customer, settings):
    card = save_card(customer)
    settings.PANEL_STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    client = login(customer)
    answer = client.post(reverse("billing_pay_invoice", args=[invoice.uuid]), follow=True)
    assert b"Stripe cannot be reached just now; nothing was charged." in answer.content
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and not invoice.payments.exists()
    assert AuditEntry.objects.filter(action="payment.error", object_id=str(invoice.uuid)).exists()
    assert card.pk  # the card stays


def test_wrong_api_key_is_reported(invoice, customer, stripe_account, standin):
    save_card(customer)
    stripe_account.secret_key = "sk_test_wrong"
    stripe_account.save()
    with pytest.raises(ValidationError, match="refused the API key"):
        payments.do_pay_invoice(invoice, actor=customer)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED


def test_outsiders_cannot_pay_or_touch_cards(invoice, customer, mallory, reseller):
    card = save_card(customer)
    for user in (mallory,):
        client = login(user)
        assert client.post(reverse("billing_pay_invoice", args=[invoice.uuid])).status_code == 404
        assert client.post(reverse("billing_card_remove", args=[card.uuid])).status_code == 404
        assert client.post(reverse("billing_card_default", args=[card.uuid])).status_code == 404
    # The reseller sees its customer's invoice but does not pay it with the customer's card.
    login(reseller).post(reverse("billing_pay_invoice", args=[invoice.uuid]))
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and PaymentCard.objects.filter(pk=card.pk).exists()


def test_api_cards_and_pay_with_visibility(invoice, customer, mallory, standin):
    api = login(customer)
    setup = api.post("/api/v1/payment-methods/setup/").json()
    stripe_client.confirm_setup_intent(setup["setup_intent"], "pm_card_mastercard")
    saved = api.post(
        "/api/v1/payment-methods/", {"setup_intent": setup["setup_intent"]}, "application/json"
    )
    assert saved.status_code == 201 and saved.json()["last4"] == "4444"
    card = saved.json()["uuid"]
    save_card(customer)
    listed = api.get("/api/v1/payment-methods/").json()
    assert [c["is_default"] for c in listed["results"]] == [True, False]
    assert "stripe_id" not in listed["results"][0]
    # Query count does not grow with the number of cards.
    from tests.conftest import queries_for

    few = queries_for(api, "/api/v1/payment-methods/")
    save_card(customer)
    assert queries_for(api, "/api/v1/payment-methods/") == few

    outsider = login(mallory)
    assert outsider.get("/api/v1/payment-methods/").json()["results"] == []
    assert outsider.delete(f"/api/v1/payment-methods/{card}/").status_code == 404
    assert outsider.post(f"/api/v1/invoices/{invoice.uuid}/pay/").status_code == 404
    assert (
        outsider.post(
            f"/api/v1/invoices/{invoice.uuid}/pay/", {"card": card}, "application/json"
        ).status_code
        == 404
    )

    paid = api.post(f"/api/v1/invoices/{invoice.uuid}/pay/", {"card": card}, "application/json")
    assert paid.status_code == 200 and paid.json()["state"] == "succeeded"
    again = api.post(f"/api/v1/invoices/{invoice.uuid}/pay/")
    assert again.status_code == 400
    assert api.delete(f"/api/v1/payment-methods/{card}/").status_code == 204
    assert not PaymentCard.objects.filter(uuid=card).exists()


def test_admin_sets_the_stripe_account_secrets_write_only(admin_user, billing_user, db):
    admin = login(admin_user)
    answer = admin.post(
        "/admin/billing/stripeaccount/add/",
        {"publishable_key": "pk_test_a", "secret_key": "sk_test_a", "webhook_secret": "whsec_a"},
    )
    assert answer.status_code == 302, answer.content[:500]
    account = StripeAccount.objects.get()
    assert (account.secret_key, account.webhook_secret) == ("sk_test_a", "whsec_a")
    page = admin.get(f"/admin/billing/stripeaccount/{account.pk}/change/").content
    assert b"sk_test_a" not in page and b"whsec_a" not in page
    # Blank keeps the secrets; a wrong-looking key is refused.
    admin.post(
        f"/admin/billing/stripeaccount/{account.pk}/change/",
        {"publishable_key": "pk_test_b", "secret_key": "", "webhook_secret": ""},
    )
    account.refresh_from_db()
    assert (account.publishable_key, account.secret_key) == ("pk_test_b", "sk_test_a")
    admin.post(
        f"/admin/billing/stripeaccount/{account.pk}/change/",
        {"publishable_key": "pk_test_b", "secret_key": "password", "webhook_secret": ""},
    )
    account.refresh_from_db()
    assert account.secret_key == "sk_test_a"
    entry = AuditEntry.objects.filter(action="billing.stripe_account").first()
    assert "sk_test_a" not in str(entry.changes)
    # Billing staff do not reach the account's secrets.
    assert login(billing_user).get("/admin/billing/stripeaccount/").status_code in (302, 403, 404)


@pytest.mark.django_db(transaction=True)
def test_webhook_delivered_over_http_by_the_standin(live_server, standin, settings, admin_user):
    """Stripe's side for real: the stand-in posts the signed event to the panel's endpoint
    over HTTP, after answering the charge, as Stripe does."""
    from tests.conftest import make_user, wait_until

    settings.PANEL_STRIPE_API_BASE = standin.url
    StripeAccount.objects.create(secret_key=API_KEY, webhook_secret=WEBHOOK_SECRET)
    customer = make_user("http-hook@example.com", "customer")
    draft = Invoice.objects.create(customer=customer, currency="EUR")
    draft.lines.create(description="Plan", amount=Decimal("3.00"))
    services.do_issue_invoice(draft, actor=admin_user, send=False)
    card = save_card(customer)
    standin.webhook_url = live_server.url + WEBHOOK
    try:
        stripe_client.charge(
            amount_cents=300, currency="EUR", customer_id=cards.ensure_customer(customer),
            payment_method=card.stripe_id, invoice_uuid=str(draft.uuid), description="x",
            idempotency_key=f"http-{draft.uuid}",
        )  # fmt: skip
        wait_until(lambda: Invoice.objects.get(pk=draft.pk).state == Invoice.State.PAID)
    finally:
        standin.webhook_url = ""
    assert StripeEvent.objects.get(invoice=draft).result == "paid"
    # The same body again over HTTP: 200 and nothing more.
    body, _ = standin.events[-1]
    assert standin.deliver(body, url=live_server.url + WEBHOOK) == 200
    assert Invoice.objects.get(pk=draft.pk).payments.count() == 1
    assert standin.deliver(body, url=live_server.url + WEBHOOK, signature="t=1,v1=00") == 400


def test_void_is_refused_while_the_card_charge_is_under_way(
    invoice, customer, admin_user, standin, monkeypatch
):
    """Regression: staff could void between the charge and its record (the card charged,
    the usage billed again, then a 500 and the money never recorded)."""
    card = save_card(customer)
    real_charge, seen = stripe_client.charge, {}

    def charge_while_staff_voids(**kwargs):
        seen["payment"] = Payment.objects.get(invoice=invoice)
        with pytest.raises(ValidationError, match="under way"):
            services.do_void_invoice(invoice, actor=admin_user, reason="mistake")
        with pytest.raises(ValidationError, match="under way"):
            payments.do_pay_invoice(invoice, actor=customer, card=card)  # a double click
        return real_charge(**kwargs)

    monkeypatch.setattr(stripe_client, "charge", charge_while_staff_voids)
    payment = payments.do_pay_invoice(invoice, actor=customer, card=card)
    assert seen["payment"].state == Payment.State.PENDING and seen["payment"].external_id == ""
    assert payment.pk == seen["payment"].pk and payment.external_id.startswith("pi_")
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == Decimal("12.50")
    assert invoice.payments.count() == 1


def test_webhook_faster_than_the_charge_answer_claims_the_recorded_attempt(
    invoice, customer, standin, monkeypatch
):
    import json

    card = save_card(customer)
    real_charge = stripe_client.charge

    def charge_then_webhook(**kwargs):
        intent = real_charge(**kwargs)
        body, _ = standin.events[-1]
        assert payments.handle_event(json.loads(body)) == "paid"
        return intent

    monkeypatch.setattr(stripe_client, "charge", charge_then_webhook)
    payments.do_pay_invoice(invoice, actor=customer, card=card)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.amount_paid == Decimal("12.50")
    assert invoice.payments.get().state == Payment.State.SUCCEEDED


def test_card_needing_authentication_fails_clearly_and_pay_now_works_again(
    invoice, customer, standin, client
):
    card = save_card(customer, "pm_card_authenticationRequired")
    with pytest.raises(ValidationError, match="needs authentication"):
        payments.do_pay_invoice(invoice, actor=customer, card=card)
    attempt = Payment.objects.get(invoice=invoice)
    assert attempt.state == Payment.State.FAILED and "authentication" in attempt.failure_message
    visa = save_card(customer)
    payments.do_pay_invoice(invoice, actor=customer, card=visa)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID


@pytest.mark.parametrize("kind", ["payment_intent.canceled", "payment_intent.payment_failed"])
def test_canceled_or_failed_event_ends_a_pending_payment(
    invoice, client, standin, admin_user, kind
):
    import json

    payments._pending(invoice, "pi_pending_3ds", invoice.balance, actor=None)
    with pytest.raises(ValidationError, match="under way"):
        services.do_void_invoice(invoice, actor=admin_user, reason="mistake")
    event = {"id": f"evt_{kind}", "object": "event", "type": kind, "data": {"object": {
        "id": "pi_pending_3ds", "object": "payment_intent", "status": "canceled",
        "metadata": {"panel_invoice": str(invoice.uuid)}}}}  # fmt: skip
    body = json.dumps(event).encode()
    assert post_event(client, body, sign(body, WEBHOOK_SECRET)).content == b"failed"
    payment = Payment.objects.get(external_id="pi_pending_3ds")
    assert payment.state == Payment.State.FAILED
    services.do_void_invoice(invoice, actor=admin_user, reason="mistake")  # nothing pending


def test_an_unforeseen_error_leaves_the_attempt_pending_until_reconciled(
    invoice, customer, standin, monkeypatch
):
    """It may come after Stripe charged: the attempt blocks a second charge (under a new
    key: the card is part of it) until reconcile knows; Stripe has no record here, so after
    STUCK_AFTER it fails and Pay works again."""
    from datetime import timedelta

    from django.utils import timezone

    card = save_card(customer)
    real_charge = stripe_client.charge

    def broken(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(stripe_client, "charge", broken)
    with pytest.raises(RuntimeError):
        payments.do_pay_invoice(invoice, actor=customer, card=card)
    attempt = invoice.payments.get()
    assert attempt.state == Payment.State.PENDING and attempt.external_id == ""
    monkeypatch.setattr(stripe_client, "charge", real_charge)
    with pytest.raises(ValidationError, match="under way"):
        payments.do_pay_invoice(invoice, actor=customer, card=card)
    Payment.objects.filter(pk=attempt.pk).update(
        created_at=timezone.now() - payments.STUCK_AFTER - timedelta(seconds=1)
    )
    assert payments.reconcile(attempt).state == Payment.State.FAILED
    payments.do_pay_invoice(invoice, actor=customer, card=card)
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    keys = [r[3]["Idempotency-Key"] for r in standin.requests if r[:2] == ("POST", PAYMENT_INTENTS)]
    assert keys[-1] == f"panel-invoice-{invoice.uuid}-2-{card.stripe_id}-1250"
