"""Card payments through Stripe: a Stripe customer per billing profile, cards saved with a
SetupIntent, invoices paid with a PaymentIntent (idempotency keys), and the webhook events
that settle them. Every state change audited; an invoice is marked paid only when Stripe
says the money moved (the PaymentIntent's status, or its webhook event).

Card payments that need 3-D Secure are authenticated on session only: the portal's "Pay now"
sends the browser to the bank's page and back to ``finish_authentication``; off-session
charges (the API) that need it are failed and canceled at Stripe. ``reconcile`` asks Stripe
what became of a payment left pending (a crash between the record and Stripe's answer, a
3-D Secure page left open); the dunning light check runs it for the old ones.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_client
from billing.models import (
    RECORD_PAYMENT,
    UNSUPPORTED_CURRENCIES,
    ZERO,
    BillingProfile,
    Invoice,
    Payment,
)
from billing.payment_models import PaymentCard, StripeEvent
from billing.services import profile_of, record_payment
from billing.stripe_client import PaymentError
from core import audit
from core.policy import ADMIN, BILLING, may, role_of

log = logging.getLogger(__name__)

HANDLED = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
)


CENT = Decimal("0.01")


def _in_hundredths(currency: str) -> str:
    """The currency, if its minor unit is the hundredth (the only ones the panel bills and
    charges: billing.models.UNSUPPORTED_CURRENCIES); ValidationError otherwise. A legacy
    invoice stored in JPY or KWD is refused here, before anything is sent to Stripe."""
    code = str(currency or "").upper()
    if not re.fullmatch(r"[A-Z]{3}", code) or code in UNSUPPORTED_CURRENCIES:
        raise ValidationError(
            f"Invoices in {code or 'this currency'} cannot be paid by card: the panel "
            "charges currencies in hundredths only. Record a payment by hand instead."
        )
    return code


def minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in cents, exactly: a Decimal (never a float) with no fraction of a cent."""
    _in_hundredths(currency)
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise TypeError(f"An amount to charge is a Decimal, not {type(amount).__name__}.")
    cents = Decimal(amount).scaleb(2)
    if not cents.is_finite() or cents != cents.to_integral_value():
        raise ValidationError(f"{amount} {currency} is not a whole number of cents.")
    return int(cents)


def major_units(amount: int, currency: str) -> Decimal:
    """Stripe's amount in cents as the panel's Decimal (exact)."""
    _in_hundredths(currency)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationError(f"Stripe's amount {amount!r} is not a whole number of cents.")
    return Decimal(amount).scaleb(-2).quantize(CENT)


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
    again is harmless). The first card becomes the default; the same card saved again (the
    form resubmitted) keeps whether it is the default."""
    _may_pay_for(actor, user)
    try:
        customer_id = ensure_customer(user)
        intent = stripe_client.retrieve_setup_intent(str(setup_intent)[:100])
        if intent.customer != customer_id or intent.status != "succeeded":
            raise ValidationError({"setup_intent": "This card setup is not complete."})
        card = stripe_client.attach_payment_method(intent.payment_method, customer_id)
    except PaymentError as exc:
        raise ValidationError(str(exc)) from exc
    details = {
        "brand": card.brand,
        "last4": card.last4,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
    }
    with transaction.atomic():
        cards = PaymentCard.objects.select_for_update().filter(user=user)
        saved = next((c for c in cards if c.stripe_id == card.id), None)
        if saved is not None:
            # Saved already: only what Stripe says of the card is refreshed.
            PaymentCard.objects.filter(pk=saved.pk).update(**details)
            saved.refresh_from_db()
            return saved
        if PaymentCard.objects.filter(stripe_id=card.id).exists():
            raise ValidationError({"setup_intent": "This card is saved for another account."})
        first = not cards
        saved = PaymentCard.objects.create(
            user=user, stripe_id=card.id, is_default=first, **details
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
    """Detach the card at Stripe and forget it. Removing the default card makes the newest
    other one the default (and the profile's payment method); removing another card leaves
    the default as it is."""
    _may_pay_for(actor, card.user)
    try:
        stripe_client.detach_payment_method(card.stripe_id)
    except PaymentError as exc:
        raise ValidationError(str(exc)) from exc
    with transaction.atomic():
        cards = list(
            PaymentCard.objects.select_for_update()
            .filter(user=card.user_id)
            .order_by("-created_at", "-id")
        )
        removed = next((c for c in cards if c.pk == card.pk), None)
        if removed is None:  # removed meanwhile (a double click)
            return
        audit.record(
            "payment_card.remove",
            removed,
            actor=actor,
            owner_id=removed.user_id,
            changes={"card": [str(removed), None]},
        )
        rest = next((c for c in cards if c.pk != removed.pk), None)
        removed.delete()
        if removed.is_default:
            if rest is not None:
                PaymentCard.objects.filter(pk=rest.pk).update(is_default=True)
            _set_profile_method(card.user, rest.stripe_id if rest else "")


# Paying an invoice ------------------------------------------------------------------------


def do_pay_invoice(
    invoice: Invoice, *, actor, card: PaymentCard | None = None, return_url: str = ""
) -> Payment:
    """Charge the balance of an issued invoice to a saved card. The same attempt repeated
    (a double click, a retry after a timeout) reuses its idempotency key, so Stripe charges
    once; after a decline a new attempt gets a new key.

    The PENDING payment is recorded, under the invoice's lock, before Stripe is called: a
    void (refused while a card payment is pending) cannot slip in between the charge and
    its record, and the money Stripe takes is always on the invoice.

    With ``return_url`` the customer is present (the portal): a card that needs 3-D Secure
    leaves the payment pending with ``payment.authentication_url``, the bank's page, which
    sends the browser back to ``return_url`` (``finish_authentication``). Without it (the
    API: off session) such a charge is failed and canceled at Stripe. An earlier attempt
    still waiting for its authentication is canceled at Stripe when "Pay now" is used
    again (the customer left the bank's page).

    The idempotency key names the attempt, the card and the amount: a new attempt (after a
    decline, or after a connection that was never made) with another card or another
    balance is a new request, never one Stripe refuses as a reused key. That is safe
    because an attempt whose outcome is unknown (Stripe's answer lost) stays pending and
    blocks any new one until it is reconciled: a second key is only ever used once the
    first is known not to have charged."""
    _may_pay_for(actor, invoice.customer)
    _in_hundredths(invoice.currency)  # before anything is sent to Stripe
    if card is None:
        card = PaymentCard.objects.filter(user=invoice.customer_id, is_default=True).first()
    if card is None or card.user_id != invoice.customer_id:
        raise ValidationError("Add a card first (Payment methods).")
    _end_waiting_attempt(invoice, actor=actor)
    try:
        customer_id = ensure_customer(invoice.customer)
    except PaymentError as exc:
        raise ValidationError(str(exc)) from exc
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.kind != Invoice.Kind.INVOICE or invoice.state != Invoice.State.ISSUED:
            raise ValidationError("Only an issued, unpaid invoice can be paid.")
        balance = invoice.balance
        if balance <= ZERO:
            raise ValidationError("Nothing is due on this invoice.")
        stripe_payments = invoice.payments.filter(method=Payment.Method.STRIPE)
        if stripe_payments.filter(state=Payment.State.PENDING).exists():
            raise ValidationError(
                "A card payment of this invoice is under way (or its result is not known "
                "yet): the invoice shows its result within minutes."
            )
        attempt = stripe_payments.count() + 1
        cents = minor_units(balance, invoice.currency)
        payment = record_payment(
            invoice,
            amount=balance,
            method=Payment.Method.STRIPE,
            actor=actor,
            state=Payment.State.PENDING,
        )
    try:
        intent = stripe_client.charge(
            amount_cents=cents,
            currency=invoice.currency,
            customer_id=customer_id,
            payment_method=card.stripe_id,
            invoice_uuid=str(invoice.uuid),
            description=f"Invoice {invoice.number}",
            idempotency_key=idempotency_key(
                invoice, attempt, card=card, cents=cents, on_session=bool(return_url)
            ),
            return_url=return_url,
        )
    except PaymentError as exc:
        if exc.obj and exc.obj.get("id"):
            # Declined: Stripe made a PaymentIntent; keep the failed attempt on the invoice.
            message = AUTH_NEEDED if exc.decline == "authentication_required" else str(exc)
            _claim(payment, exc.obj["id"])
            _failed(invoice, exc.obj["id"], message, balance, actor=actor)
            raise ValidationError(message) from exc
        elif exc.unknown:
            # Stripe may have charged (a read timeout, the answer lost): the attempt stays
            # pending, blocking a second charge, until the webhook or the light check
            # (reconcile) says what became of it.
            audit.record(
                "payment.unknown",
                payment,
                actor=actor,
                owner_id=invoice.customer_id,
                changes={"error": str(exc)[:200]},
            )
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
        # Anything unforeseen (a bug, the worker killed) may come after Stripe charged: the
        # attempt stays pending, so no second charge is made under a new key, until the
        # webhook claims it or the light check reconciles it (failed after STUCK_AFTER if
        # Stripe has no record). Pay and Void are blocked for those minutes only.
        log.exception("card payment of invoice %s: unforeseen error", invoice.uuid)
        raise
    payment = _claim(payment, intent.id)
    if intent.status == "succeeded":
        received = intent.to_dict().get("amount_received") or cents
        payment = settle(
            intent.id,
            invoice_uuid=str(invoice.uuid),
            amount=major_units(received, invoice.currency),
        )
    elif intent.status == "requires_action":
        url = _authentication_url(intent.to_dict()) if return_url else ""
        if url:
            # The customer authenticates at the bank's page; until the browser comes back
            # (or the webhook, or reconcile) the payment stays pending with its id.
            payment.authentication_url = url
            return payment
        # Off session nobody is there to authenticate: a failed attempt (not a payment
        # pending forever that blocks "Pay now"), canceled at Stripe so that it cannot be
        # completed later behind the panel's back.
        _cancel_quietly(intent.id)
        payment = _failed(invoice, intent.id, AUTH_NEEDED, balance, actor=actor)
        raise ValidationError(AUTH_NEEDED)
    return payment


def idempotency_key(
    invoice: Invoice, attempt: int, *, card: PaymentCard, cents: int, on_session: bool
) -> str:
    """The charge's key: the same attempt repeated with the same card and amount is the same
    request (Stripe answers it with the first result). On and off session are different
    requests too: an API attempt whose answer was lost must not block the portal's "Pay
    now" (nor the reverse)."""
    key = f"panel-invoice-{invoice.uuid}-{attempt}-{card.stripe_id}-{cents}"
    return key + ("-on-session" if on_session else "")


AUTH_NEEDED = (
    "The card needs authentication (3-D Secure), which an automatic charge cannot give: "
    "pay by bank transfer, or use another card."
)
AUTH_FAILED = (
    "The card's authentication (3-D Secure) failed; nothing was charged. Try again, or use "
    "another card."
)
AUTH_ABANDONED = (
    "The card's authentication (3-D Secure) was not completed within an hour; the payment "
    "was canceled and nothing was charged."
)
AUTH_REPLACED = (
    "Replaced by a new payment before the card's authentication (3-D Secure) was completed; "
    "nothing was charged."
)
NO_RECORD = "Stripe has no record of this charge; nothing was taken."
NOT_THIS_INVOICE = "This payment is not one of this invoice's."
# A payment recorded pending this long ago without Stripe's answer is not under way any
# more: longer than any request can take (Stripe's timeout is 20 s; a web request is cut
# off far sooner than this).
STUCK_AFTER = timedelta(minutes=10)
# How long the bank's 3-D Secure page may stay open before reconcile cancels the intent.
AUTHENTICATION_WINDOW = timedelta(hours=1)
# Statuses of an intent still waiting for the customer (nothing charged yet; cancelable).
WAITING = ("requires_action", "requires_confirmation")


def _authentication_url(intent) -> str:
    """The bank's page for an on-session intent (``next_action.redirect_to_url``); empty
    for any other action (Stripe.js's, which the panel's pages do not run)."""
    action = intent.get("next_action") or {}
    if action.get("type") != "redirect_to_url":
        return ""
    url = str((action.get("redirect_to_url") or {}).get("url") or "")
    return url if re.fullmatch(r"https?://[^\s\x00-\x1f\x7f]+", url) else ""


def _cancel_quietly(intent_id: str) -> None:
    try:
        stripe_client.cancel_payment_intent(intent_id)
    except PaymentError as exc:
        # Marked failed anyway: if it ever succeeds, its webhook still settles it.
        log.warning("payment intent %s not canceled at Stripe: %s", intent_id, exc)


def failure_of(intent) -> str:
    """What to tell the customer about an intent that did not take the money."""
    error = intent.get("last_payment_error") or {}
    if error.get("code") == "payment_intent_authentication_failure":
        return AUTH_FAILED
    if intent.get("status") == "canceled":
        return "The payment was canceled at Stripe; nothing was charged."
    return str(error.get("message") or "The payment failed.")


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
    """The payment row of PaymentIntent ``intent_id``: the one recorded, the invoice's
    attempt recorded before its charge returned (claimed), or a new pending one. Recorded
    whatever the invoice's state: Stripe's word on money it took is never refused (an
    invoice voided or paid meanwhile gets the payment, flagged to refund, by ``settle``).
    Called with the invoice locked."""
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
        with transaction.atomic():
            payment = Payment.objects.create(
                invoice=invoice,
                amount=Decimal(amount).quantize(CENT),
                currency=invoice.currency,
                method=Payment.Method.STRIPE,
                external_id=intent_id,
                state=Payment.State.PENDING,
            )
            audit.record(
                "payment.record",
                payment,
                actor=actor,
                owner_id=invoice.customer_id,
                changes={
                    "invoice": [None, invoice.number],
                    "amount": [None, str(payment.amount)],
                    "method": [None, Payment.Method.STRIPE],
                },
            )
    except IntegrityError:  # recorded meanwhile
        return Payment.objects.get(method=Payment.Method.STRIPE, external_id=intent_id)
    return payment


def _failed(invoice: Invoice, intent_id: str, message: str, amount: Decimal, *, actor=None):
    with transaction.atomic():
        # The invoice first, then the payment: the order settle and reconcile lock in.
        Invoice.objects.select_for_update().filter(pk=invoice.pk).first()
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
    """The PaymentIntent succeeded: Stripe took ``amount``. Its payment is recorded as
    succeeded whatever happened meanwhile, but only what the invoice still owes counts
    towards it (the invoice is paid once nothing is due; then dunning lifts what it
    suspended). The rest (the invoice was paid by hand, credited or voided meanwhile) is
    the payment's ``refund_due``: audited as ``payment.overpaid`` and listed on the staff
    dunning queue as needing a refund. Idempotent."""
    from billing import dunning

    received = Decimal(amount).quantize(CENT)
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(uuid=invoice_uuid)
        payment = (
            Payment.objects.select_for_update()
            .filter(method=Payment.Method.STRIPE, external_id=intent_id)
            .first()
        )
        if payment is None:
            payment = _pending(invoice, intent_id, received, actor=None)
        if payment.state == Payment.State.SUCCEEDED:
            return payment
        before = payment.state
        owed = ZERO
        if invoice.kind == Invoice.Kind.INVOICE and invoice.state == Invoice.State.ISSUED:
            owed = max(invoice.balance, ZERO)
        applied = min(received, owed)
        refund_due = received - applied
        Payment.objects.filter(pk=payment.pk).update(
            state=Payment.State.SUCCEEDED,
            failure_message="",
            received_at=timezone.now(),
            amount=received,
            refund_due=refund_due,
        )
        changes = {"state": [before, Payment.State.SUCCEEDED], "amount": str(received)}
        if received != payment.amount:
            changes["amount"] = [str(payment.amount), str(received)]
        audit.record("payment.succeeded", payment, owner_id=invoice.customer_id, changes=changes)
        if refund_due > ZERO:
            log.warning(
                "card payment %s of %s %s for invoice %s (%s, %s due): %s to refund",
                intent_id, received, invoice.currency, invoice.number or invoice.uuid,
                invoice.state, owed, refund_due,
            )  # fmt: skip
            audit.record(
                "payment.overpaid",
                payment,
                owner_id=invoice.customer_id,
                changes={
                    "invoice_state": invoice.state,
                    "received": str(received),
                    "applied": str(applied),
                    "refund_due": [None, str(refund_due)],
                },
            )
        if applied > ZERO:
            invoice.amount_paid += applied
            if invoice.balance <= ZERO:
                invoice.state, invoice.paid_at = Invoice.State.PAID, timezone.now()
                invoice.save()
                audit.record(
                    "invoice.paid", invoice, changes={"state": [Invoice.State.ISSUED, "paid"]}
                )
                # Robust: a failing reactivation must not turn a recorded payment into an
                # error page (the light check lifts the suspensions in ten minutes).
                customer_id = invoice.customer_id
                transaction.on_commit(
                    lambda: dunning.reactivate_if_settled(customer_id), robust=True
                )
            else:
                invoice.save()
    payment.refresh_from_db()
    return payment


# Waiting, returning and stuck payments --------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What Stripe said about a payment and what the panel made of it."""

    payment: Payment
    state: str  # the payment's state now: succeeded, failed, pending
    message: str


def _apply_intent(payment: Payment, intent, *, actor, end_waiting: str = "") -> Outcome:
    """Bring ``payment`` in line with Stripe's ``intent`` (retrieved from Stripe, never
    taken from a browser): succeeded settles, canceled or requires_payment_method fails,
    processing stays pending. One still waiting for its authentication stays pending,
    unless ``end_waiting`` says why to give up: then it is canceled at Stripe first, so
    that it can never be completed behind the panel's back."""
    invoice = payment.invoice
    payment = _claim(payment, intent["id"])
    if intent["status"] in WAITING and end_waiting:
        try:
            intent = stripe_client.cancel_payment_intent(intent["id"])
        except PaymentError as exc:
            if exc.retryable:
                raise
            # Refused: it moved on meanwhile (succeeded, canceled); take what it is now.
            intent = stripe_client.retrieve_payment_intent(intent["id"])
        if intent["status"] == "canceled":
            failed = _failed(invoice, intent["id"], end_waiting, payment.amount, actor=actor)
            return Outcome(failed, failed.state, end_waiting)
    if intent["status"] == "succeeded":
        amount = major_units(intent.get("amount_received") or intent["amount"], invoice.currency)
        paid = settle(intent["id"], invoice_uuid=str(invoice.uuid), amount=amount)
        return Outcome(paid, paid.state, f"Paid: {paid.amount} {paid.currency}.")
    if intent["status"] in ("canceled", "requires_payment_method"):
        message = failure_of(intent)
        failed = _failed(invoice, intent["id"], message, payment.amount, actor=actor)
        return Outcome(failed, failed.state, message)
    if intent["status"] in WAITING:
        return Outcome(payment, payment.state, "Waiting for the card's authentication.")
    return Outcome(payment, payment.state, "Stripe is still processing this payment.")


def _end_waiting_attempt(invoice: Invoice, *, actor) -> None:
    """Before a new "Pay now": an earlier attempt still waiting for its authentication (the
    customer left the bank's page) is canceled at Stripe and marked failed, so that only
    the new one can take the money. One that succeeded meanwhile is settled (the new
    attempt is then refused: nothing is due); one still processing keeps blocking."""
    waiting = (
        invoice.payments.filter(method=Payment.Method.STRIPE, state=Payment.State.PENDING)
        .exclude(external_id="")
        .select_related("invoice")
        .first()
    )
    if waiting is None:
        return
    try:
        intent = stripe_client.retrieve_payment_intent(waiting.external_id)
        _apply_intent(waiting, intent, actor=actor, end_waiting=AUTH_REPLACED)
    except PaymentError as exc:
        raise ValidationError(str(exc)) from exc


def finish_authentication(invoice: Invoice, *, actor, payment_intent: str) -> Outcome:
    """The browser is back from the bank's 3-D Secure page (``?payment_intent=pi_..``).
    Nothing in the address is trusted but the id: the intent is read from Stripe, and it
    must be a payment of this invoice (its row, its ``metadata[panel_invoice]`` and its
    customer). A payment already ended (a replayed address) changes nothing."""
    _may_pay_for(actor, invoice.customer)
    intent_id = str(payment_intent or "")
    if not re.fullmatch(r"pi_[A-Za-z0-9_]{1,100}", intent_id):
        raise ValidationError(NOT_THIS_INVOICE)
    payment = Payment.objects.filter(method=Payment.Method.STRIPE, external_id=intent_id).first()
    if payment is None:
        # Stripe answered but the id never reached the row (a crash): the invoice's attempt
        # recorded before the charge is this one, if Stripe says the intent is this invoice's.
        payment = invoice.payments.filter(
            method=Payment.Method.STRIPE, state=Payment.State.PENDING, external_id=""
        ).first()
    if payment is None or payment.invoice_id != invoice.pk:
        raise ValidationError(NOT_THIS_INVOICE)
    if payment.state == Payment.State.SUCCEEDED:
        return Outcome(payment, payment.state, "This payment is recorded: the invoice is paid.")
    if payment.state != Payment.State.PENDING:
        return Outcome(
            payment, payment.state, f"This payment attempt has ended: {payment.failure_message}"
        )
    try:
        intent = stripe_client.retrieve_payment_intent(intent_id)
    except PaymentError as exc:
        raise ValidationError(
            "Stripe cannot be reached just now; the payment stays pending and is checked "
            "again automatically."
            if exc.retryable
            else str(exc)
        ) from exc
    customer_id = _customer_id(invoice.customer_id)
    if (intent.get("metadata") or {}).get("panel_invoice") != str(invoice.uuid) or (
        not customer_id or intent.get("customer") != customer_id
    ):
        log.warning("return from 3-D Secure with %s, not a payment of %s", intent_id, invoice)
        raise ValidationError(NOT_THIS_INVOICE)
    payment.invoice = invoice
    outcome = _apply_intent(payment, intent, actor=actor)
    if outcome.state == Payment.State.PENDING and intent["status"] in WAITING:
        return Outcome(
            outcome.payment,
            outcome.state,
            "The card's authentication is not complete. Use Pay now to start again.",
        )
    return outcome


def _customer_id(user_id: int) -> str:
    """The account's Stripe customer, if it has one (never created here)."""
    found = BillingProfile.objects.filter(user_id=user_id).values_list(
        "stripe_customer_id", flat=True
    )
    return next(iter(found), "") or ""


UNREACHABLE = "Stripe cannot be reached just now; the payment is left as it is. Try again shortly."


def reconcile(payment: Payment, *, actor=None) -> Outcome:
    """Ask Stripe what became of a pending card payment: one left without its
    PaymentIntent id (the panel died between the record and Stripe's answer, which would
    block Pay and Void forever), one still processing, or one waiting for 3-D Secure.

    Without an id, the customer's PaymentIntents for this invoice are listed and one not
    recorded on another payment is taken; its status is applied (succeeded settles,
    canceled or requires_payment_method fails, processing stays pending with the id).
    One waiting for authentication is canceled at Stripe once older than an hour (or at
    once if nobody can authenticate it: off session). If Stripe has none and the payment
    is older than ``STUCK_AFTER`` it is failed: nothing was taken, and Pay and Void work
    again. Stripe out of reach leaves the row untouched (ValidationError).

    ``actor`` None is the light check: then only changes are audited (a payment still
    waiting is checked again in ten minutes); a person's check is always audited."""
    payment = Payment.objects.select_related("invoice").get(pk=payment.pk)
    invoice = payment.invoice
    if actor is not None and not may(actor, RECORD_PAYMENT, invoice):
        raise PermissionDenied("You may not check payments with Stripe.")
    if payment.method != Payment.Method.STRIPE or payment.state != Payment.State.PENDING:
        raise ValidationError("Only a pending card payment is checked with Stripe.")
    before = payment.state
    try:
        intent = _intent_of(payment)
        if intent is None:
            outcome = _no_record(payment, actor=actor)
        else:
            outcome = _apply_intent(payment, intent, actor=actor, end_waiting=_give_up(intent))
    except PaymentError as exc:
        message = UNREACHABLE if exc.retryable else f"Stripe refused the check: {exc}"
        if actor is not None:
            _audit_reconcile(payment, actor, "error", message)
        raise ValidationError(message) from exc
    if actor is not None or outcome.state != before:
        _audit_reconcile(outcome.payment, actor, outcome.state, outcome.message)
    return outcome


def _intent_of(payment: Payment):
    if payment.external_id:
        return stripe_client.retrieve_payment_intent(payment.external_id)
    customer_id = _customer_id(payment.invoice.customer_id)
    if not customer_id:  # no customer at Stripe: no charge could have been made
        return None
    invoice_uuid = str(payment.invoice.uuid)
    intents = stripe_client.list_payment_intents(customer_id, invoice_uuid=invoice_uuid)
    recorded = set(
        Payment.objects.filter(
            method=Payment.Method.STRIPE, external_id__in=[i["id"] for i in intents]
        ).values_list("external_id", flat=True)
    )
    free = [i for i in intents if i["id"] not in recorded]
    # The one that took the money first, then the ones that may still; newest first.
    rank = {"succeeded": 0, "processing": 1, "requires_action": 2, "requires_confirmation": 2}
    free.sort(key=lambda i: (rank.get(i["status"], 3), -int(i.get("created") or 0)))
    return free[0] if free else None


def _give_up(intent) -> str:
    """Why to cancel an intent still waiting for authentication, or "" to keep waiting."""
    if intent["status"] not in WAITING:
        return ""
    if not _authentication_url(intent):
        return AUTH_NEEDED  # off session (or a Stripe.js action): nobody can authenticate
    created = datetime.fromtimestamp(int(intent.get("created") or 0), tz=UTC)
    return AUTH_ABANDONED if timezone.now() - created > AUTHENTICATION_WINDOW else ""


def _no_record(payment: Payment, *, actor) -> Outcome:
    if timezone.now() - payment.created_at < STUCK_AFTER:
        return Outcome(
            payment,
            payment.state,
            "Stripe has no record of this charge yet; it may still be under way. It is "
            "checked again automatically.",
        )
    with transaction.atomic():
        Invoice.objects.select_for_update().filter(pk=payment.invoice_id).first()
        # Only if still unclaimed: a webhook may have given it its id meanwhile.
        if Payment.objects.filter(
            pk=payment.pk, state=Payment.State.PENDING, external_id=""
        ).update(state=Payment.State.FAILED, failure_message=NO_RECORD):
            audit.record(
                "payment.failed",
                payment,
                actor=actor,
                owner_id=payment.invoice.customer_id,
                changes={
                    "state": [Payment.State.PENDING, Payment.State.FAILED],
                    "error": NO_RECORD,
                },
            )
    payment.refresh_from_db()
    if payment.state == Payment.State.FAILED:
        return Outcome(payment, payment.state, NO_RECORD)
    return Outcome(payment, payment.state, "Stripe answered meanwhile; the invoice shows it.")


def _audit_reconcile(payment: Payment, actor, state: str, message: str) -> None:
    audit.record(
        "payment.reconcile",
        payment,
        actor=actor,
        owner_id=payment.invoice.customer_id,
        changes={
            "payment_intent": payment.external_id or None,
            "result": state,
            "message": message[:200],
        },
    )


# Webhook events ---------------------------------------------------------------------------


NOT_OURS = "no invoice of this panel"


def _invoice_of(obj) -> Invoice | None:
    """The invoice ``metadata[panel_invoice]`` names, or None (none, not a UUID, unknown)."""
    raw = (obj.get("metadata") or {}).get("panel_invoice") or ""
    try:
        key = uuid.UUID(str(raw))
    except ValueError:
        return None
    return Invoice.objects.filter(uuid=key).first()


def _received(obj, invoice: Invoice) -> Decimal:
    """What a succeeded intent took, in the invoice's currency (ValidationError if it is
    another currency or one the panel does not charge: never converted by guess)."""
    currency = str(obj.get("currency") or invoice.currency).upper()
    if currency != invoice.currency.upper():
        raise ValidationError(f"paid in {currency}, the invoice is in {invoice.currency}")
    return major_units(obj.get("amount_received") or obj.get("amount") or 0, currency)


def handle_event(event) -> str:
    """Apply one verified event once: a replay (same id) changes nothing, unknown types are
    recorded and ignored. Returns what was done (kept on the StripeEvent row).

    Stripe retries an event for days until it is answered 200, so an event that can never
    be applied is recorded with the reason and answered 200 too: one naming no invoice of
    this panel, or money taken for an invoice voided or paid meanwhile (recorded on it as a
    payment to refund, listed on the dunning queue)."""
    obj = event["data"]["object"]
    invoice = _invoice_of(obj)
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
            result = NOT_OURS
            if event["type"] == "payment_intent.succeeded":
                log.warning(
                    "stripe event %s: %s succeeded, %s", event["id"], obj.get("id"), NOT_OURS
                )
        elif event["type"] == "payment_intent.succeeded":
            try:
                amount = _received(obj, invoice)
            except ValidationError as exc:
                result = f"not applied: {' '.join(exc.messages)}"[:200]
                log.error("stripe event %s for %s %s", event["id"], invoice.uuid, result)
                audit.record(
                    "payment.unmatched",
                    invoice,
                    changes={"payment_intent": str(obj.get("id"))[:100], "error": result},
                )
            else:
                payment = settle(str(obj["id"]), invoice_uuid=str(invoice.uuid), amount=amount)
                result = "paid"
                if payment.refund_due > ZERO:
                    result = (
                        f"needs a refund: {payment.refund_due} {payment.currency} not owed "
                        f"(invoice {invoice.state})"
                    )
        else:
            _failed(invoice, obj["id"], failure_of(obj), invoice.balance)
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
