"""Saved cards: a Stripe customer per billing profile, cards saved with a SetupIntent that
Stripe.js confirms in the browser (the card number never reaches the panel), the default
card, removal. Every change audited. Invoices are paid with them in billing.payments."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from billing import stripe_client
from billing.payment_models import PaymentCard
from billing.services import profile_of
from billing.stripe_client import PaymentError
from core import audit
from core.policy import ADMIN, BILLING, role_of


def check_payer(actor, user) -> None:
    """Customers manage their own cards and pay their own invoices; administrators and
    billing staff may act for them."""
    if actor is not None and actor.pk != user.pk and role_of(actor) not in (ADMIN, BILLING):
        raise ValidationError("Only the customer pays their invoices.")


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
    check_payer(actor, user)
    try:
        intent_id, client_secret = stripe_client.create_setup_intent(ensure_customer(user))
    except PaymentError as exc:
        raise ValidationError(str(exc)) from exc
    return {"setup_intent": intent_id, "client_secret": client_secret}


def do_save_card(user, *, actor, setup_intent: str) -> PaymentCard:
    """Record the card a confirmed SetupIntent saved (attached to the customer: attaching
    again is harmless). The first card becomes the default; the same card saved again (the
    form resubmitted) keeps whether it is the default."""
    check_payer(actor, user)
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
    check_payer(actor, card.user)
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
    check_payer(actor, card.user)
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
