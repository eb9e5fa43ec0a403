"""Card payments through Stripe: a Stripe customer per billing profile, cards saved with a
SetupIntent, invoices paid with a PaymentIntent (idempotency keys), and the webhook events
that settle them. Every state change audited; an invoice is marked paid only when Stripe
says the money moved (the PaymentIntent's status, or its webhook event).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_client
from billing.models import ZERO, Invoice, Payment
from billing.payment_models import PaymentCard, StripeEvent
from billing.services import profile_of, record_payment
from billing.stripe_client import PaymentError
from core import audit
from core.policy import ADMIN, BILLING, role_of

# Currencies Stripe takes in whole units (no cents).
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF",
                          "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})  # fmt: skip
HANDLED = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
)


def minor_units(amount: Decimal, currency: str) -> int:
    return int(amount if currency.upper() in ZERO_DECIMAL else amount * 100)


def _may_pay_for(actor, user) -> None:
    """Customers manage their own cards and pay their own invoices; administrators and
    billing staff may act for them."""
    if actor is not None and actor.pk != user.pk and role_of(actor) not in (ADMIN, BILLING):
        raise ValidationError("Only the customer pays their invoices.")


# Customers and cards --------------------------------------------------------------------


def ensure_customer(user) -> str:
    """The Stripe customer of ``user``'s billing profile, created once (an idempotency key
    per account, so a retried creation does not make a second customer)."""
    profile = profile_of(user)
    if profile.stripe_customer_id:
        return profile.stripe_customer_id
    customer_id = stripe_client.create_customer(
        email=profile.invoice_email or user.email,
        name=profile.legal_name or getattr(user, "name", "") or user.email,
        user_id=user.pk,
        idempotency_key=f"panel-customer-{user.pk}",
    )
    with transaction.atomic():
        type(profile).objects.filter(pk=profile.pk).update(stripe_customer_id=customer_id)
        audit.record(
            "billing.stripe_customer",
            profile,
            owner_id=user.pk,
            changes={"stripe_customer_id": [None, customer_id]},
        )
    return customer_id


def start_card_setup(user, *, actor) -> dict:
    """A SetupIntent for the portal: Stripe.js confirms it with the card the customer types
    (the card number never reaches the panel), then ``do_save_card`` records it."""
    _may_pay_for(actor, user)
    try:
        intent_id, client_secret = stripe_client.create_setup_intent(ensure_customer(user))
    except PaymentError as exc:
        raise ValidationError(str(exc)) from exc
    return {"setup_intent": intent_id, "client_secret": client_secret}


def do_save_card(user, *, actor, setup_intent: str) -> PaymentCard:
    """Record the card a confirmed SetupIntent saved (attached to the customer: attaching
    again is harmless). The first card becomes the default."""
    _may_pay_for(actor, user)
    try:
        customer_id = ensure_customer(user)
        intent = stripe_client.retrieve_setup_intent(str(setup_intent)[:100])
        if intent.customer != customer_id or intent.status != "succeeded":
            raise ValidationError({"setup_intent": "This card setup is not complete."})
        card = stripe_client.attach_payment_method(intent.payment_method, customer_id)
    except PaymentError as exc:
        raise ValidationError(str(exc)) from exc
    with transaction.atomic():
        first = not PaymentCard.objects.filter(user=user).exists()
        saved, _ = PaymentCard.objects.update_or_create(
            stripe_id=card.id,
            defaults={
                "user": user,
                "brand": card.brand,
                "last4": card.last4,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "is_default": first,
            },
        )
        if first:
            _set_profile_method(user, card.id)
        audit.record(
            "payment_card.add",
            saved,
            actor=actor,
            owner_id=user.pk,
            changes={"card": [None, str(saved)]},
        )
    return saved


def _set_profile_method(user, payment_method: str) -> None:
    profile = profile_of(user)
    type(profile).objects.filter(pk=profile.pk).update(stripe_payment_method_id=payment_method)


def do_set_default_card(card: PaymentCard, *, actor) -> PaymentCard:
    _may_pay_for(actor, card.user)
    with transaction.atomic():
        PaymentCard.objects.filter(user=card.user_id).exclude(pk=card.pk).update(is_default=False)
        PaymentCard.objects.filter(pk=card.pk).update(is_default=True)
        _set_profile_method(card.user, card.stripe_id)
        audit.record("payment_card.default", card, actor=actor, owner_id=card.user_id)
    card.is_default = True
    return card


def do_remove_card(card: PaymentCard, *, actor) -> None:
    _may_pay_for(actor, card.user)
    try:
        stripe_client.detach_payment_method(card.stripe_id)
    except PaymentError as exc:
        raise ValidationError(str(exc)) from exc
    with transaction.atomic():
        audit.record(
            "payment_card.remove",
            card,
            actor=actor,
            owner_id=card.user_id,
            changes={"card": [str(card), None]},
        )
        card.delete()
        rest = PaymentCard.objects.filter(user=card.user_id).order_by("-created_at").first()
        if card.is_default and rest is not None:
            PaymentCard.objects.filter(pk=rest.pk).update(is_default=True)
        _set_profile_method(card.user, rest.stripe_id if rest else "")


# Paying an invoice ------------------------------------------------------------------------


def do_pay_invoice(invoice: Invoice, *, actor, card: PaymentCard | None = None) -> Payment:
    """Charge the balance of an issued invoice to a saved card. The same attempt repeated
    (a double click, a retry after a timeout) reuses its idempotency key, so Stripe charges
    once; after a decline a new attempt gets a new key.

    The PENDING payment is recorded, under the invoice's lock, before Stripe is called: a
    void (refused while a card payment is pending) cannot slip in between the charge and
    its record, and the money Stripe takes is always on the invoice."""
    _may_pay_for(actor, invoice.customer)
    if card is None:
        card = PaymentCard.objects.filter(user=invoice.customer_id, is_default=True).first()
    if card is None or card.user_id != invoice.customer_id:
        raise ValidationError("Add a card first (Payment methods).")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.kind != Invoice.Kind.INVOICE or invoice.state != Invoice.State.ISSUED:
            raise ValidationError("Only an issued, unpaid invoice can be paid.")
        balance = invoice.balance
        if balance <= ZERO:
            raise ValidationError("Nothing is due on this invoice.")
        stripe_payments = invoice.payments.filter(method=Payment.Method.STRIPE)
        if stripe_payments.filter(state=Payment.State.PENDING).exists():
            raise ValidationError("A card payment of this invoice is under way.")
        attempt = stripe_payments.count() + 1
        payment = record_payment(
            invoice,
            amount=balance,
            method=Payment.Method.STRIPE,
            actor=actor,
            state=Payment.State.PENDING,
        )
    try:
        intent = stripe_client.charge(
            amount_cents=minor_units(balance, invoice.currency),
            currency=invoice.currency,
            customer_id=ensure_customer(invoice.customer),
            payment_method=card.stripe_id,
            invoice_uuid=str(invoice.uuid),
            description=f"Invoice {invoice.number}",
            idempotency_key=f"panel-invoice-{invoice.uuid}-{attempt}",
        )
    except PaymentError as exc:
        if exc.obj and exc.obj.get("id"):
            # Declined: Stripe made a PaymentIntent; keep the failed attempt on the invoice.
            message = AUTH_NEEDED if exc.decline == "authentication_required" else str(exc)
            _claim(payment, exc.obj["id"])
            _failed(invoice, exc.obj["id"], message, balance, actor=actor)
            raise ValidationError(message) from exc
        else:
            # No PaymentIntent known: forget the attempt, so a retry reuses its key (and
            # Stripe answers for the charge it may have made) instead of charging again.
            with transaction.atomic():
                Payment.objects.filter(
                    pk=payment.pk, external_id="", state=Payment.State.PENDING
                ).delete()
                audit.record(
                    "payment.error",
                    invoice,
                    actor=actor,
                    changes={"error": [None, str(exc)[:200]]},
                )
        raise ValidationError(str(exc)) from exc
    except BaseException:
        # Anything unforeseen: no attempt left pending forever (it would block Pay and Void).
        Payment.objects.filter(pk=payment.pk, external_id="", state=Payment.State.PENDING).delete()
        raise
    payment = _claim(payment, intent.id)
    if intent.status == "succeeded":
        payment = settle(intent.id, invoice_uuid=str(invoice.uuid), amount=balance)
    elif intent.status == "requires_action":
        # Off-session, nobody is there to authenticate (3-D Secure): a failed attempt, not
        # a payment pending forever that blocks "Pay now".
        payment = _failed(invoice, intent.id, AUTH_NEEDED, balance, actor=actor)
        raise ValidationError(AUTH_NEEDED)
    return payment


AUTH_NEEDED = (
    "The card needs authentication (3-D Secure), which an automatic charge cannot give: "
    "pay by bank transfer, or use another card."
)


def _claim(payment: Payment, intent_id: str) -> Payment:
    """Give the attempt recorded before the charge its PaymentIntent id (unless the webhook
    was faster and recorded that id itself: then that row is the payment)."""
    try:
        with transaction.atomic():
            Payment.objects.filter(pk=payment.pk, external_id="").update(external_id=intent_id)
    except IntegrityError:
        Payment.objects.filter(pk=payment.pk, external_id="", state=Payment.State.PENDING).delete()
        return Payment.objects.get(method=Payment.Method.STRIPE, external_id=intent_id)
    payment.refresh_from_db()
    return payment


def _pending(invoice: Invoice, intent_id: str, amount: Decimal, *, actor) -> Payment:
    existing = Payment.objects.filter(method=Payment.Method.STRIPE, external_id=intent_id).first()
    if existing is not None:
        return existing
    # The attempt do_pay_invoice recorded before its charge returned (an event was faster).
    unclaimed = invoice.payments.filter(
        method=Payment.Method.STRIPE, state=Payment.State.PENDING, external_id=""
    ).first()
    if unclaimed is not None:
        return _claim(unclaimed, intent_id)
    try:
        return record_payment(
            invoice,
            amount=amount,
            method=Payment.Method.STRIPE,
            actor=actor,
            external_id=intent_id,
            state=Payment.State.PENDING,
        )
    except ValidationError:
        # The webhook recorded it meanwhile.
        return Payment.objects.get(method=Payment.Method.STRIPE, external_id=intent_id)


def _failed(invoice: Invoice, intent_id: str, message: str, amount: Decimal, *, actor=None):
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(
            method=Payment.Method.STRIPE, external_id=intent_id
        ).first() or _pending(invoice, intent_id, amount, actor=actor)
        if payment.state != Payment.State.PENDING:
            return payment
        Payment.objects.filter(pk=payment.pk).update(
            state=Payment.State.FAILED, failure_message=message[:300]
        )
        audit.record(
            "payment.failed",
            payment,
            actor=actor,
            owner_id=invoice.customer_id,
            changes={"state": [Payment.State.PENDING, Payment.State.FAILED], "error": message},
        )
    payment.refresh_from_db()
    return payment


def settle(intent_id: str, *, invoice_uuid: str, amount: Decimal) -> Payment:
    """The PaymentIntent succeeded: its payment counts, and the invoice is paid once nothing
    is due (then dunning lifts what it suspended). Idempotent."""
    from billing import dunning

    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(uuid=invoice_uuid)
        payment = (
            Payment.objects.select_for_update()
            .filter(method=Payment.Method.STRIPE, external_id=intent_id)
            .first()
        )
        if payment is None:
            payment = _pending(invoice, intent_id, amount, actor=None)
        if payment.state == Payment.State.SUCCEEDED:
            return payment
        before = payment.state
        Payment.objects.filter(pk=payment.pk).update(
            state=Payment.State.SUCCEEDED, failure_message="", received_at=timezone.now()
        )
        audit.record(
            "payment.succeeded",
            payment,
            owner_id=invoice.customer_id,
            changes={"state": [before, Payment.State.SUCCEEDED], "amount": str(payment.amount)},
        )
        invoice.amount_paid += payment.amount
        if invoice.balance <= ZERO and invoice.state == Invoice.State.ISSUED:
            invoice.state, invoice.paid_at = Invoice.State.PAID, timezone.now()
            invoice.save()
            audit.record("invoice.paid", invoice, changes={"state": [Invoice.State.ISSUED, "paid"]})
            transaction.on_commit(lambda: dunning.reactivate_if_settled(invoice.customer_id))
        else:
            invoice.save()
    payment.refresh_from_db()
    return payment


# Webhook events ---------------------------------------------------------------------------


def handle_event(event) -> str:
    """Apply one verified event once: a replay (same id) changes nothing, unknown types are
    recorded and ignored. Returns what was done."""
    obj = event["data"]["object"]
    invoice_uuid = (obj.get("metadata") or {}).get("panel_invoice", "")
    invoice = Invoice.objects.filter(uuid=invoice_uuid).first() if invoice_uuid else None
    # One transaction: an event that fails half way is not remembered, so Stripe's retry
    # applies it again; one applied is remembered with its effects.
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = StripeEvent.objects.create(
                    event_id=str(event["id"])[:100], type=str(event["type"])[:100], invoice=invoice
                )
        except IntegrityError:
            return "duplicate"
        if event["type"] not in HANDLED:
            result = "ignored"
        elif invoice is None:
            result = "no invoice of this panel"
        elif event["type"] == "payment_intent.succeeded":
            amount = Decimal(obj.get("amount_received") or obj.get("amount") or 0)
            if invoice.currency.upper() not in ZERO_DECIMAL:
                amount = amount / 100
            settle(obj["id"], invoice_uuid=invoice_uuid, amount=amount)
            result = "paid"
        else:
            error = (obj.get("last_payment_error") or {}).get("message") or (
                "The payment was canceled."
                if event["type"] == "payment_intent.canceled"
                else "The payment failed."
            )
            _failed(invoice, obj["id"], error, invoice.balance)
            result = "failed"
        StripeEvent.objects.filter(pk=row.pk).update(result=result)
    return result


# The Stripe account ---------------------------------------------------------------------

ACCOUNT_FIELDS = ["publishable_key"]
ACCOUNT_SECRETS = ["secret_key", "webhook_secret"]


def do_save_stripe_account(*, actor, data: dict, account=None):
    """Administrators set the keys; a secret left out keeps its stored value. Audited without
    the secrets' values."""
    from billing.payment_models import StripeAccount
    from core.services import accept_only, refuse_nul_in

    accept_only(data, ACCOUNT_FIELDS + ACCOUNT_SECRETS)
    refuse_nul_in(data, ACCOUNT_FIELDS + ACCOUNT_SECRETS)
    if role_of(actor) != ADMIN:
        raise ValidationError("Only administrators set the Stripe account.")
    account = account or StripeAccount.objects.order_by("pk").first() or StripeAccount()
    changes = {}
    for name, value in data.items():
        value = (value or "").strip()
        if name in ACCOUNT_SECRETS and not value:
            continue
        if getattr(account, name) != value:
            changes[name] = ["(hidden)", "(changed)"] if name in ACCOUNT_SECRETS else [
                getattr(account, name), value]  # fmt: skip
            setattr(account, name, value)
    if account.secret_key and not account.secret_key.startswith(("sk_", "rk_")):
        raise ValidationError({"secret_key": "A Stripe secret key starts with sk_ (or rk_)."})
    if account.webhook_secret and not account.webhook_secret.startswith("whsec_"):
        raise ValidationError({"webhook_secret": "A webhook signing secret starts with whsec_."})
    account.updated_at = timezone.now()
    with transaction.atomic():
        account.save()
        audit.record("billing.stripe_account", account, actor=actor, changes=changes)
    return account
