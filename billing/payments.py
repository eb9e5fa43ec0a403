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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_client
from billing.models import RECORD_PAYMENT, ZERO, BillingProfile, Invoice, Payment
from billing.payment_models import PaymentCard, StripeEvent
from billing.services import profile_of, record_payment
from billing.stripe_client import PaymentError
from core import audit
from core.policy import ADMIN, BILLING, may, role_of

log = logging.getLogger(__name__)

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


def major_units(amount: int, currency: str) -> Decimal:
    amount = Decimal(amount or 0)
    return amount if currency.upper() in ZERO_DECIMAL else amount / 100


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
    again (the customer left the bank's page)."""
    _may_pay_for(actor, invoice.customer)
    if card is None:
        card = PaymentCard.objects.filter(user=invoice.customer_id, is_default=True).first()
    if card is None or card.user_id != invoice.customer_id:
        raise ValidationError("Add a card first (Payment methods).")
    _end_waiting_attempt(invoice, actor=actor)
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
            # On and off session are different requests: Stripe refuses a key used again
            # with other parameters, so an API attempt whose answer was lost must not
            # block the portal's "Pay now" of the same attempt (nor the reverse).
            idempotency_key=f"panel-invoice-{invoice.uuid}-{attempt}"
            + ("-on-session" if return_url else ""),
            return_url=return_url,
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
