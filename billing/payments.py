"""Card payments through Stripe: invoices paid with a PaymentIntent (idempotency keys) with
the cards billing.cards saves, and the webhook events that settle them. Every state change
audited; an invoice is marked paid only when Stripe says the money moved (the
PaymentIntent's status, or its webhook event).

Card payments that need 3-D Secure are authenticated on session only: the portal's "Pay now"
sends the browser to the bank's page and back to ``finish_authentication``; off-session
charges (the API) that need it are failed and canceled at Stripe. ``reconcile`` asks Stripe
what became of a payment left pending (a crash between the record and Stripe's answer, a
3-D Secure page left open); the dunning light check runs it for the old ones.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_client
from billing.cards import check_payer, ensure_customer
from billing.models import (
    RECORD_PAYMENT,
    RECORD_REFUND,
    UNSUPPORTED_CURRENCIES,
    ZERO,
    BillingProfile,
    Invoice,
    Payment,
)
from billing.payment_models import PaymentCard, StripeEvent
from billing.services import record_payment
from billing.stripe_client import PaymentError
from core import audit
from core.policy import ADMIN, may, role_of
from core.validators import validate_plain_text

log = logging.getLogger(__name__)

HANDLED = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
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
    check_payer(actor, invoice.customer)
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
            # Off session, a card that needs 3-D Secure is declined (402
            # authentication_required) with its intent left open: cancel it, so that it can
            # never be completed later behind the panel's back.
            auth = exc.decline == "authentication_required" or exc.code == "authentication_required"
            message = AUTH_NEEDED if auth else str(exc)
            _claim(payment, exc.obj["id"])
            if auth or exc.obj.get("status") in WAITING:
                _cancel_quietly(exc.obj["id"])
            _failed(invoice, exc.obj["id"], message, balance, actor=actor)
            raise ValidationError(message) from exc
        if exc.refused:
            # Stripe refused the request (or it never left): nothing was charged. Forget
            # the attempt, so that Pay now works again at once.
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
        # Anything else may come after Stripe charged (a read timeout, the answer lost, a
        # 5xx, which Stripe calls indeterminate): the attempt stays pending, blocking a
        # second charge under another key (the portal's Pay now after an API attempt),
        # until the webhook or the light check (reconcile) says what became of it.
        audit.record(
            "payment.unknown",
            payment,
            actor=actor,
            owner_id=invoice.customer_id,
            changes={"error": str(exc)[:200]},
        )
        raise ValidationError(stripe_client.CHARGE_NO_ANSWER) from exc
    except BaseException:
        # Anything unforeseen (a bug, the worker killed) may come after Stripe charged: the
        # attempt stays pending, so no second charge is made under a new key, until the
        # webhook claims it or the light check reconciles it (failed after STUCK_AFTER if
        # Stripe has no record). Pay and Void are blocked for those minutes only.
        log.exception("card payment of invoice %s: unforeseen error", invoice.uuid)
        raise
    payment = _claim(payment, intent.id)
    if intent.status == "succeeded":
        found = intent.to_dict()
        received = found.get("amount_received")
        payment = settle(
            intent.id,
            invoice_uuid=str(invoice.uuid),
            amount=major_units(cents if received is None else received, invoice.currency),
            currency=str(found.get("currency") or invoice.currency),
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
    if not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f]+", url):
        return ""
    if url.startswith("http://") and not _stripe_is_loopback():
        return ""  # the bank's page is https; plain http only from a local stand-in
    return url


def _stripe_is_loopback() -> bool:
    """PANEL_STRIPE_API_BASE points at this machine (a stand-in for tests and demos)."""
    from django.conf import settings

    host = urlsplit(str(settings.PANEL_STRIPE_API_BASE or "")).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


MISMATCH = (
    "Stripe's {intent} received {received}; this payment is {expected}: not applied. Check "
    "it in Stripe's dashboard (refund what was taken), then record the refund."
)


def _matches(payment: Payment, intent, *, received: bool = False) -> bool:
    """Whether Stripe's ``intent`` is exactly this payment: its currency and its amount in
    cents (with ``received``: what Stripe took)."""
    if str(intent.get("currency") or "").upper() != payment.currency.upper():
        return False
    try:
        cents = minor_units(Decimal(payment.amount), payment.currency)
    except (ValidationError, TypeError):
        return False
    found = intent.get("amount_received" if received else "amount")
    return isinstance(found, int) and not isinstance(found, bool) and found == cents


def _stripe_amount(intent, key: str) -> str:
    """Stripe's amount for people (its minor units as they are if the currency is not one
    the panel charges)."""
    currency = str(intent.get("currency") or "").upper()
    try:
        return f"{major_units(intent.get(key), currency)} {currency}"
    except ValidationError:
        return f"{intent.get(key)!r} (minor units) {currency}"


def _flag(payment: Payment, reason: str, *, action: str, changes: dict, actor=None) -> Payment:
    """Leave a pending card payment for staff (``attention``: the dunning queue lists it;
    the 10-minute check skips it). Audited once per reason."""
    with transaction.atomic():
        if (
            Payment.objects.filter(pk=payment.pk, state=Payment.State.PENDING)
            .exclude(attention=reason[:300])
            .update(attention=reason[:300])
        ):
            log.error("card payment %s needs staff: %s", payment.uuid, reason)
            audit.record(
                action,
                payment,
                actor=actor,
                owner_id=payment.invoice.customer_id,
                changes={**changes, "attention": reason[:300]},
            )
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
    # Only one of the same amount: an intent of another amount is not that attempt's.
    unclaimed = invoice.payments.filter(
        method=Payment.Method.STRIPE,
        state=Payment.State.PENDING,
        external_id="",
        amount=Decimal(amount).quantize(CENT),
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


def settle(intent_id: str, *, invoice_uuid: str, amount: Decimal, currency: str = "") -> Payment:
    """The PaymentIntent succeeded: Stripe took ``amount``. Its payment is recorded as
    succeeded whatever happened meanwhile, but only what the invoice still owes counts
    towards it (the invoice is paid once nothing is due; then dunning lifts what it
    suspended). The rest (the invoice was paid by hand, credited or voided meanwhile) is
    the payment's ``refund_due``: audited as ``payment.overpaid`` and listed on the staff
    dunning queue as needing a refund. Idempotent.

    A payment row recorded with another amount or currency than Stripe's (``currency``:
    Stripe's, default the invoice's) is not settled: it stays pending, flagged for staff
    (``payment.mismatch``, the dunning queue), whatever Stripe took is never counted as
    the row's amount."""
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
        currency = (currency or invoice.currency).upper()
        if received != payment.amount or currency != payment.currency.upper():
            return _flag(
                payment,
                MISMATCH.format(
                    intent=intent_id, received=f"{received} {currency}",
                    expected=f"{payment.amount} {payment.currency}",
                ),
                action="payment.mismatch",
                changes={"payment_intent": intent_id, "received": f"{received} {currency}",
                         "expected": f"{payment.amount} {payment.currency}"},
            )  # fmt: skip
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
    if not payment.external_id and not _matches(payment, intent):
        raise ValidationError(NOT_THIS_INVOICE)  # another amount: not this attempt's intent
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
        if not _matches(payment, intent, received=True):
            flagged = _flag(
                payment,
                MISMATCH.format(
                    intent=intent["id"], received=_stripe_amount(intent, "amount_received"),
                    expected=f"{payment.amount} {payment.currency}",
                ),
                action="payment.mismatch", actor=actor,
                changes={"payment_intent": intent["id"],
                         "received": _stripe_amount(intent, "amount_received"),
                         "expected": f"{payment.amount} {payment.currency}"},
            )  # fmt: skip
            return Outcome(flagged, flagged.state, flagged.attention)
        # The row's own amount: checked above to be exactly what Stripe received.
        paid = settle(
            intent["id"],
            invoice_uuid=str(invoice.uuid),
            amount=payment.amount,
            currency=payment.currency,
        )
        return Outcome(paid, paid.state, f"Paid: {paid.amount} {paid.currency}.")
    if intent["status"] in ("canceled", "requires_payment_method"):
        if intent["status"] == "requires_payment_method":
            # Failed (a declined card, 3-D Secure failed at the bank's page): cancel it, so
            # that the browser, which had its client_secret in the address, cannot
            # confirm it again behind the panel's back.
            _cancel_quietly(intent["id"])
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
    check_payer(actor, invoice.customer)
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

    An intent is taken or applied only if its amount and currency are exactly the
    payment's; otherwise the payment stays pending, flagged for staff (``attention``). A
    permanent refusal about the payment (404 and the like) flags it too.

    ``actor`` None is the light check: then only changes are audited (a payment still
    waiting is checked again in ten minutes); a person's check is always audited. A person
    must be allowed RECORD_PAYMENT on the invoice: administrators, billing staff and the
    reseller that issued it (asking Stripe only applies what Stripe says)."""
    payment = Payment.objects.select_related("invoice").get(pk=payment.pk)
    invoice = payment.invoice
    if actor is not None and not may(actor, RECORD_PAYMENT, invoice):
        raise PermissionDenied("You may not check payments with Stripe.")
    if payment.method != Payment.Method.STRIPE or payment.state != Payment.State.PENDING:
        raise ValidationError("Only a pending card payment is checked with Stripe.")
    before = payment.state
    Payment.objects.filter(pk=payment.pk).update(last_checked_at=timezone.now())
    try:
        intent = _intent_of(payment)
        if payment.attention:  # Stripe answers now: staff's check starts afresh
            Payment.objects.filter(pk=payment.pk).update(attention="")
            payment.attention = ""
        if intent is None:
            outcome = _no_record(payment, actor=actor)
        else:
            outcome = _apply_intent(payment, intent, actor=actor, end_waiting=_give_up(intent))
    except PaymentError as exc:
        message = UNREACHABLE if exc.retryable else f"Stripe refused the check: {exc}"
        if exc.about_the_object:
            # Permanent (the intent is unknown to this Stripe account: keys of another
            # account?): staff look at it; the light check stops asking.
            _flag(
                payment,
                f"Stripe refused to look this payment up ({exc})"[:250] + ": check it in "
                "Stripe's dashboard.",
                action="payment.flagged",
                actor=actor,
                changes={"payment_intent": payment.external_id or None, "error": str(exc)[:200]},
            )
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
    # Only one for this attempt's amount and currency: a leftover intent of another amount
    # (0.01, another currency) with the invoice's metadata is not this payment.
    free = [i for i in intents if i["id"] not in recorded and _matches(payment, i)]
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
    refunded = None
    if event["type"] == "charge.refunded":
        # A charge names its PaymentIntent; the payment row names the invoice.
        refunded = (
            Payment.objects.filter(
                method=Payment.Method.STRIPE, external_id=str(obj.get("payment_intent") or "")
            )
            .exclude(external_id="")
            .select_related("invoice")
            .first()
        )
        invoice = refunded.invoice if refunded else None
    else:
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
        elif event["type"] == "charge.refunded":
            result = _refunded_at_stripe(refunded, obj)
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
                recorded = (
                    Payment.objects.filter(
                        method=Payment.Method.STRIPE,
                        external_id=str(obj.get("id")),
                        state=Payment.State.PENDING,
                    )
                    .select_related("invoice")
                    .first()
                )
                if recorded is not None:  # the panel's attempt: staff look at it
                    _flag(
                        recorded,
                        MISMATCH.format(
                            intent=obj.get("id"), received=_stripe_amount(obj, "amount_received"),
                            expected=f"{recorded.amount} {recorded.currency}",
                        ),
                        action="payment.mismatch",
                        changes={"payment_intent": str(obj.get("id"))[:100], "error": result},
                    )  # fmt: skip
            else:
                payment = settle(
                    str(obj["id"]),
                    invoice_uuid=str(invoice.uuid),
                    amount=amount,
                    currency=str(obj.get("currency") or invoice.currency),
                )
                result = "paid"
                if payment.state == Payment.State.PENDING:
                    result = "not applied: the amount differs from the payment's (flagged)"
                elif payment.refund_due > ZERO:
                    result = (
                        f"needs a refund: {payment.refund_due} {payment.currency} not owed "
                        f"(invoice {invoice.state})"
                    )
        else:
            intent_id = str(obj["id"])
            known = Payment.objects.filter(
                method=Payment.Method.STRIPE, external_id=intent_id
            ).exists()
            _failed(invoice, intent_id, failure_of(obj), invoice.balance)
            result = "failed"
            if known and obj.get("status") == "requires_payment_method":
                # A payment of the panel's that failed (3-D Secure failed, the customer gone):
                # canceled at Stripe so that its client_secret cannot confirm it again.
                transaction.on_commit(lambda: _cancel_quietly(intent_id), robust=True)
        StripeEvent.objects.filter(pk=row.pk).update(result=result)
    return result


# Refunds ----------------------------------------------------------------------------------

REFUND_FIELDS = ["reference"]


def do_record_refund(payment: Payment, *, actor, data: dict) -> Payment:
    """Staff refunded a card payment at Stripe (or by bank transfer) and say so here, with
    the refund's reference (Stripe's ``re_...``): ``refund_due`` goes to zero and the
    dunning queue's entry goes. A pending card payment flagged for staff (Stripe's amount
    differs, or Stripe does not know it) is closed the same way: marked refunded (never
    counted on the invoice), which lets Pay and Void work again. Audited
    (``payment.refunded``). Only those who may record refunds (the policy:
    RECORD_REFUND, billing staff and administrators: the panel's Stripe account is theirs)."""
    from core.services import accept_only, refuse_nul_in

    accept_only(data, REFUND_FIELDS)
    refuse_nul_in(data, REFUND_FIELDS)
    if not may(actor, RECORD_REFUND, payment):
        raise PermissionDenied("You may not record refunds.")
    reference = str(data.get("reference") or "").strip()
    if not reference:
        raise ValidationError({"reference": "Give the refund's reference (Stripe's re_... id)."})
    if len(reference) > 100:
        raise ValidationError({"reference": "At most 100 characters."})
    try:
        validate_plain_text(reference)
    except ValidationError as exc:
        raise ValidationError({"reference": exc.messages}) from exc
    with transaction.atomic():
        Invoice.objects.select_for_update().filter(pk=payment.invoice_id).first()
        current = Payment.objects.select_for_update().get(pk=payment.pk)
        changes = {"refund_reference": [current.refund_reference or None, reference]}
        if current.state == Payment.State.SUCCEEDED and current.refund_due > ZERO:
            changes["refund_due"] = [str(current.refund_due), str(ZERO)]
            Payment.objects.filter(pk=current.pk).update(
                refund_due=ZERO, refund_reference=reference
            )
        elif (
            current.state == Payment.State.PENDING
            and current.method == Payment.Method.STRIPE
            and current.attention
        ):
            changes["state"] = [current.state, Payment.State.REFUNDED]
            changes["attention"] = [current.attention, None]
            Payment.objects.filter(pk=current.pk).update(
                state=Payment.State.REFUNDED,
                attention="",
                refund_reference=reference,
                failure_message="Closed by staff: refunded or nothing taken at Stripe.",
            )
        else:
            raise ValidationError("Nothing is to be refunded on this payment.")
        audit.record(
            "payment.refunded",
            current,
            actor=actor,
            owner_id=current.invoice.customer_id,
            changes=changes,
        )
    current.refresh_from_db()
    return current


def _refunded_at_stripe(payment: Payment | None, charge) -> str:
    """``charge.refunded``: Stripe refunded (part of) a card payment. Once what it refunded
    covers the payment's ``refund_due``, that is cleared (the reference: the newest refund's
    id). A refund of money the invoice counted is not undone here (that is a credit note's
    business): recorded and left for staff."""
    if payment is None:
        return NOT_OURS
    refunded_cents = charge.get("amount_refunded")
    currency = str(charge.get("currency") or "").upper()
    if currency != payment.currency.upper():
        return f"not applied: refunded in {currency}, the payment is in {payment.currency}"
    try:
        refunded = major_units(refunded_cents, currency)
    except ValidationError as exc:
        return f"not applied: {' '.join(exc.messages)}"[:200]
    refunds = (charge.get("refunds") or {}).get("data") or []
    reference = str((refunds[0] if refunds else {}).get("id") or charge.get("id") or "")[:100]
    with transaction.atomic():
        current = Payment.objects.select_for_update().get(pk=payment.pk)
        due = current.refund_due
        if due > ZERO and refunded >= due:
            Payment.objects.filter(pk=current.pk).update(
                refund_due=ZERO, refund_reference=reference
            )
        audit.record(
            "payment.refunded",
            current,
            owner_id=current.invoice.customer_id,
            changes={
                "refunded_at_stripe": f"{refunded} {currency}",
                "refund_due": [str(due), str(ZERO if refunded >= due else due)],
                "refund_reference": reference,
            },
        )
    if due > ZERO and refunded >= due:
        extra = refunded - due
        return "refunded" + (f" ({extra} {currency} more than was due: check)" if extra else "")
    if due > ZERO:
        return f"partly refunded: {refunded} of {due} {currency} due"
    return f"refunded {refunded} {currency} of a counted payment: check the invoice"


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
