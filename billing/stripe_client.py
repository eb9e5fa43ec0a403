"""The adapter to Stripe's API, through the official ``stripe`` library: every call the
panel makes, each raising ``PaymentError`` (one error type, with ``retryable`` and, for a
declined card, ``decline``) instead of the library's exceptions.

The client is built per call from the ``StripeAccount`` row (the secret key, decrypted) and
``settings.PANEL_STRIPE_API_BASE`` (the library's ``api_base``: Stripe's own, or a stand-in).
No automatic retries: a timed out charge is not silently repeated; callers repeat with the
same idempotency key, which Stripe answers with the first result.

A connection error is not always "nothing happened": only a connection that was never made
(refused, unresolvable, connect timeout) or a rate limit (429) proves that Stripe did nothing.
A read timeout or a connection dropped after the request was sent may follow a charge Stripe
made: such errors are ``unknown`` (the caller keeps its attempt pending, to be reconciled).
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
import stripe
import urllib3
from django.conf import settings

from billing.payment_models import StripeAccount

TIMEOUT = 20
NOT_REACHED = "Stripe cannot be reached just now; nothing was charged. Try again shortly."
NO_ANSWER = "Stripe's answer did not arrive; what Stripe did is not known yet."
CHARGE_NO_ANSWER = (
    "Stripe's answer did not arrive: the result of the payment is not known yet; the invoice "
    "will show it within minutes (do not pay twice)."
)


class PaymentError(Exception):
    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        decline: str = "",
        obj=None,
        unknown: bool = False,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.decline = decline  # "card_declined" and the like: the customer's card said no
        self.obj = obj  # the PaymentIntent Stripe returned with the error, if any
        # The request may have reached Stripe and been carried out (its answer was lost).
        self.unknown = unknown


@dataclass(frozen=True)
class Card:
    id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


def account() -> StripeAccount:
    row = StripeAccount.objects.order_by("pk").first()
    if row is None or not row.secret_key:
        raise PaymentError("Card payments are not set up: no Stripe secret key is configured.")
    return row


def client() -> stripe.StripeClient:
    return stripe.StripeClient(
        account().secret_key,
        base_addresses={"api": settings.PANEL_STRIPE_API_BASE},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=TIMEOUT),
    )


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except stripe.CardError as exc:
        raise PaymentError(
            exc.user_message or "The card was declined.",
            decline=exc.code or "card_declined",
            obj=(exc.json_body or {}).get("error", {}).get("payment_intent"),
        ) from exc
    except stripe.AuthenticationError as exc:
        raise PaymentError("Stripe refused the API key (check the Stripe account).") from exc
    except stripe.RateLimitError as exc:  # refused before doing anything
        raise PaymentError(NOT_REACHED, retryable=True) from exc
    except stripe.APIConnectionError as exc:
        if never_sent(exc):
            raise PaymentError(NOT_REACHED, retryable=True) from exc
        raise PaymentError(NO_ANSWER, retryable=True, unknown=True) from exc
    except stripe.StripeError as exc:
        status = exc.http_status or 0
        message = exc.user_message or "Stripe refused the request."
        raise PaymentError(message, retryable=status >= 500) from exc


def never_sent(exc: stripe.APIConnectionError) -> bool:
    """The request never left: no connection was made (refused, name not resolved, connect
    timeout). Anything else (a read timeout, the connection dropped while waiting for the
    answer, TLS trouble) may come after Stripe received the request and acted on it."""
    cause = exc.__cause__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(cause, requests.exceptions.ConnectionError) or not cause.args:
        return False
    reason = getattr(cause.args[0], "reason", cause.args[0])  # urllib3's MaxRetryError
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def create_customer(*, email: str, name: str, user_id: int, idempotency_key: str) -> str:
    customer = _call(
        client().v1.customers.create,
        params={"email": email, "name": name, "metadata": {"panel_user": str(user_id)}},
        options={"idempotency_key": idempotency_key},
    )
    return customer.id


def create_setup_intent(customer_id: str) -> tuple[str, str]:
    """(id, client_secret): Stripe.js confirms it in the browser with the card details."""
    intent = _call(
        client().v1.setup_intents.create,
        params={"customer": customer_id, "usage": "off_session", "payment_method_types": ["card"]},
    )
    return intent.id, intent.client_secret


def confirm_setup_intent(intent_id: str, payment_method: str) -> str:
    """What Stripe.js does in the browser (used by tests and the API): returns the
    attached payment method's id."""
    intent = _call(
        client().v1.setup_intents.confirm,
        intent_id,
        params={"payment_method": payment_method},
    )
    if intent.status != "succeeded":
        raise PaymentError(f"The card could not be saved ({intent.status}).")
    return intent.payment_method


def retrieve_setup_intent(intent_id: str):
    return _call(client().v1.setup_intents.retrieve, intent_id)


def attach_payment_method(payment_method: str, customer_id: str) -> Card:
    pm = _call(client().v1.payment_methods.attach, payment_method, params={"customer": customer_id})
    return _card(pm)


def detach_payment_method(payment_method: str) -> None:
    _call(client().v1.payment_methods.detach, payment_method)


def list_cards(customer_id: str) -> list[Card]:
    found = _call(
        client().v1.payment_methods.list, params={"customer": customer_id, "type": "card"}
    )
    return [_card(pm) for pm in found.data]


def _card(pm) -> Card:
    card = pm.to_dict().get("card") or {}
    return Card(
        id=pm.id,
        brand=str(card.get("brand") or "")[:20],
        last4=str(card.get("last4") or "")[:4],
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def charge(
    *,
    amount_cents: int,
    currency: str,
    customer_id: str,
    payment_method: str,
    invoice_uuid: str,
    description: str,
    idempotency_key: str,
    return_url: str = "",
):
    """Create and confirm a PaymentIntent. Without ``return_url``: off session (nobody is
    there to authenticate). With it: on session, the customer in the browser; a card that
    needs 3-D Secure answers ``requires_action`` with ``next_action.redirect_to_url`` (the
    bank's page, which sends the browser back to ``return_url``). The result (succeeded,
    processing, requires_action) is final only once its webhook event arrives."""
    params = {
        "amount": amount_cents,
        "currency": currency.lower(),
        "customer": customer_id,
        "payment_method": payment_method,
        "confirm": True,
        "description": description,
        "metadata": {"panel_invoice": invoice_uuid},
    }
    if return_url:
        params["return_url"] = return_url
    else:
        params["off_session"] = True
    try:
        return _call(
            client().v1.payment_intents.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )
    except PaymentError as exc:
        if exc.unknown:
            raise PaymentError(CHARGE_NO_ANSWER, retryable=True, unknown=True) from exc
        raise


def retrieve_payment_intent(intent_id: str) -> dict:
    """The PaymentIntent as Stripe has it now (a plain dict, as the webhook's object)."""
    return _call(client().v1.payment_intents.retrieve, intent_id).to_dict()


def list_payment_intents(customer_id: str, *, invoice_uuid: str) -> list[dict]:
    """The customer's PaymentIntents made for one invoice (``metadata[panel_invoice]``),
    newest first. Stripe lists by customer only (metadata is not a list filter), so the
    customer's intents are paged through and the invoice's kept."""
    page = _call(client().v1.payment_intents.list, params={"customer": customer_id, "limit": 100})
    found = []
    while True:
        intents = [i.to_dict() for i in page.data]
        found += [
            i for i in intents if (i.get("metadata") or {}).get("panel_invoice") == invoice_uuid
        ]
        if not page.has_more or not page.data:
            return found
        page = _call(
            client().v1.payment_intents.list,
            params={"customer": customer_id, "limit": 100, "starting_after": page.data[-1].id},
        )


def cancel_payment_intent(intent_id: str, *, reason: str = "abandoned") -> dict:
    """Cancel at Stripe so it can never be completed later (a 3-D Secure page left open).
    Stripe refuses (400 ``payment_intent_unexpected_state``) once it succeeded or was
    canceled: callers read the intent again then."""
    return _call(
        client().v1.payment_intents.cancel, intent_id, params={"cancellation_reason": reason}
    ).to_dict()


def verify_event(payload: bytes, signature: str) -> dict:
    """The event (a plain dict) if ``signature`` (the Stripe-Signature header) is Stripe's
    over ``payload`` with the endpoint secret, within five minutes; PaymentError otherwise."""
    secret = account().webhook_secret
    if not secret:
        raise PaymentError("No webhook signing secret is configured.")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise PaymentError("The webhook's signature does not verify.") from exc
    return event.to_dict()
