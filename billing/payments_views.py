"""Payment pages: a customer's cards (add with Stripe.js, default, remove), "Pay now" on an
invoice (and the return from the bank's 3-D Secure page), "Check with Stripe", the dunning
queue, "Refunded" for staff, and Stripe's webhook endpoint (no session: it is authenticated
by its signature, so it is exempt from CSRF and login)."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from csp.decorators import csp_update
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, login_required
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from billing import cards, payments, stripe_client
from billing.models import RECORD_PAYMENT, RECORD_REFUND, Invoice, Payment
from billing.payment_models import (
    DunningStep,
    DunningSuspension,
    PaymentCard,
    StripeAccount,
    StripeEvent,
)
from billing.stripe_client import PaymentError
from core.clientip import for_request
from core.generic import get_for_user, redirect_htmx_aware
from core.policy import CHANGE, VIEW, may, restrict

log = logging.getLogger(__name__)


def invoice_url(invoice: Invoice) -> str:
    try:
        return invoice.get_absolute_url()
    except NoReverseMatch:  # the invoice pages are not mounted (yet)
        return reverse("billing_payment_methods")


# Stripe.js and its card frame come from Stripe (this page only).
STRIPE_JS = {
    "script-src": ["https://js.stripe.com"],
    "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
    "connect-src": ["https://api.stripe.com"],
}


def invoice_section(invoice: Invoice, user) -> dict:
    """The invoice page's payment section (core.sections: "billing.invoice_detail")."""
    attempts = list(
        invoice.payments.filter(
            method=Payment.Method.STRIPE, state__in=(Payment.State.FAILED, Payment.State.PENDING)
        ).order_by("received_at", "id")
    )
    pending = [p for p in attempts if p.state == Payment.State.PENDING]
    return {
        "invoice": invoice,
        "may_pay": invoice.state == Invoice.State.ISSUED
        and invoice.kind == Invoice.Kind.INVOICE
        and invoice.customer_id == user.pk,
        "failed": [p for p in attempts if p.state == Payment.State.FAILED],
        "pending": pending,
        # Whoever may record payments on it (staff, the issuing reseller) asks Stripe.
        "may_reconcile": bool(pending) and may(user, RECORD_PAYMENT, invoice),
        "steps": list(invoice.dunning_steps.all()),
    }


@login_required
@require_GET
@csp_update(STRIPE_JS)
def payment_methods(request):
    cards = restrict(PaymentCard, request.user, VIEW).filter(user=request.user)
    account = StripeAccount.objects.order_by("pk").first()
    return render(
        request,
        "billing/payment_methods.html",
        {
            "cards": list(cards),
            "publishable_key": account.publishable_key if account else "",
            "configured": bool(account and account.configured),
        },
    )


@login_required
@require_POST
def card_setup(request):
    """The SetupIntent Stripe.js confirms in the browser (JSON: its client secret)."""
    try:
        return JsonResponse(cards.start_card_setup(request.user, actor=request.user))
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)


@login_required
@require_POST
def card_save(request):
    try:
        cards.do_save_card(
            request.user, actor=request.user, setup_intent=request.POST.get("setup_intent", "")
        )
        messages.success(request, "Card saved.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect_htmx_aware(request, reverse("billing_payment_methods"))


@login_required
@require_POST
def card_default(request, uuid):
    card = get_for_user(PaymentCard, request.user, CHANGE, uuid=uuid)
    cards.do_set_default_card(card, actor=request.user)
    messages.success(request, "Default card changed.")
    return redirect_htmx_aware(request, reverse("billing_payment_methods"))


@login_required
@require_POST
def card_remove(request, uuid):
    card = get_for_user(PaymentCard, request.user, CHANGE, uuid=uuid)
    try:
        cards.do_remove_card(card, actor=request.user)
        messages.success(request, "Card removed.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect_htmx_aware(request, reverse("billing_payment_methods"))


@login_required
@require_POST
def pay_invoice(request, uuid):
    """Pay now: the invoice's balance charged to the default card (or the one chosen), on
    session: a card that needs 3-D Secure sends the browser to the bank's page, which sends
    it back to ``payment_return``."""
    invoice = get_for_user(Invoice, request.user, VIEW, uuid=uuid)
    card = None
    if request.POST.get("card"):
        try:
            card = get_for_user(PaymentCard, request.user, CHANGE, uuid=request.POST["card"])
        except ValidationError as exc:  # not a UUID
            raise Http404 from exc
    return_url = request.build_absolute_uri(reverse("billing_payment_return", args=[invoice.uuid]))
    try:
        payment = payments.do_pay_invoice(
            invoice, actor=request.user, card=card, return_url=return_url
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        bank = getattr(payment, "authentication_url", "")
        if bank:
            return _to_the_bank(request, invoice, bank)
        if payment.state == payment.State.SUCCEEDED:
            messages.success(request, f"Paid: {payment.amount} {payment.currency}.")
        else:
            messages.info(request, "The payment is being processed; the invoice shows it.")
    return redirect_htmx_aware(request, invoice_url(invoice))


def _to_the_bank(request, invoice: Invoice, url: str):
    """To the bank's 3-D Secure page. Not a 302 answer to the form's POST: the invoice
    page's CSP (``form-action 'self'``) also governs where a form submission is redirected,
    so browsers would block it. htmx navigates itself (HX-Redirect); a plain form gets a
    page that moves on by itself (the Refresh header, which no CSP directive governs) with
    a link as well: a top-level navigation, as Stripe wants."""
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    response = render(
        request,
        "billing/payment_authenticate.html",
        {"invoice": invoice, "authentication_url": url, "invoice_url": invoice_url(invoice)},
    )
    response["Refresh"] = f"0;url={url}"
    return response


@login_required
@require_GET
def payment_return(request, uuid):
    """Back from the bank's 3-D Secure page (``?payment_intent=pi_..``, Stripe's redirect).
    The status is read from Stripe, never from the address; the intent must be this
    invoice's. Reloading the address changes nothing more."""
    invoice = get_for_user(Invoice, request.user, VIEW, uuid=uuid)
    try:
        outcome = payments.finish_authentication(
            invoice, actor=request.user, payment_intent=request.GET.get("payment_intent", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if outcome.state == Payment.State.SUCCEEDED:
            messages.success(request, outcome.message)
        elif outcome.state == Payment.State.FAILED:
            messages.error(request, outcome.message)
        else:
            messages.info(request, outcome.message)
    return redirect_htmx_aware(request, invoice_url(invoice))


@login_required
@require_POST
def reconcile_payment(request, uuid):
    """Check with Stripe: whoever may record payments on the invoice (administrators,
    billing staff, the reseller that issued it) asks what became of a pending card payment
    (billing.payments.reconcile: it only applies what Stripe says)."""
    payment = get_for_user(Payment, request.user, VIEW, uuid=uuid)
    invoice = get_for_user(Invoice, request.user, RECORD_PAYMENT, pk=payment.invoice_id)
    try:
        outcome = payments.reconcile(payment, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        level = messages.info if outcome.state == Payment.State.PENDING else messages.success
        level(request, f"Checked with Stripe: {outcome.message}")
    return redirect_htmx_aware(request, invoice_url(invoice))


@login_required
@require_POST
def record_refund(request, uuid):
    """Refunded: staff made the refund a card payment needs (at Stripe) and give its
    reference (billing.payments.do_record_refund). 404 for anyone who may not."""
    payment = get_for_user(Payment, request.user, RECORD_REFUND, uuid=uuid)
    try:
        payments.do_record_refund(
            payment, actor=request.user, data={"reference": request.POST.get("reference", "")}
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Refund recorded.")
    return redirect_htmx_aware(request, reverse("billing_dunning"))


@login_required
@require_GET
def dunning_queue(request):
    """Whoever may record payments (staff, and resellers for the invoices they issued):
    overdue invoices (or ones dunning acted on) and what dunning did about each. What is
    panel-wide (the rejected-webhook counter; card payments to refund or to look at, which
    are settled in the panel's Stripe account) only for those the policy lets record
    refunds and read the panel's Stripe events (billing staff, administrators)."""
    if not may(request.user, RECORD_PAYMENT, Invoice):
        raise Http404
    today = timezone.localdate()
    invoices = (
        restrict(Invoice, request.user, RECORD_PAYMENT)
        .filter(kind=Invoice.Kind.INVOICE, state=Invoice.State.ISSUED)
        .filter(Q(due_date__lt=today) | Q(pk__in=DunningStep.objects.values("invoice")))
        .select_related("customer")
        .prefetch_related(
            Prefetch("dunning_steps", queryset=DunningStep.objects.order_by("created_at")),
            Prefetch(
                "dunning_suspensions",
                queryset=DunningSuspension.objects.filter(lifted_at__isnull=True),
            ),
        )
        .order_by("due_date", "id")[:200]
    )
    rows = [{"invoice": i, "days": (today - i.due_date).days} for i in invoices]
    # Card payments Stripe took that the invoice did not owe (paid by hand, credited or
    # voided before the charge succeeded): refund them (at Stripe), newest first.
    staff_payments = restrict(Payment, request.user, RECORD_REFUND).select_related(
        "invoice__customer"
    )
    to_refund = staff_payments.filter(state=Payment.State.SUCCEEDED, refund_due__gt=0).order_by(
        "-received_at", "-id"
    )[:200]
    # Pending card payments flagged for staff: Stripe's amount or currency differs from the
    # payment's, or Stripe refuses to look it up (the 10-minute check leaves them alone).
    to_check = (
        staff_payments.filter(method=Payment.Method.STRIPE, state=Payment.State.PENDING)
        .exclude(attention="")
        .order_by("created_at", "id")[:200]
    )
    panel_wide = may(request.user, VIEW, StripeEvent)
    return render(
        request,
        "billing/dunning_queue.html",
        {
            "rows": rows,
            "to_refund": list(to_refund),
            "to_check": list(to_check),
            "rejected_webhooks": rejected_last_hour() if panel_wide else 0,
        },
    )


# Rejected webhook posts, counted per minute in the cache (cheap, never blocks; shared by
# the web processes with Redis) and summed over the last 60 minutes.
REJECTED_KEY = "billing:stripe-webhook-rejected:{minute}"
REJECTED_WINDOW = 60  # minutes


def _rejected_keys() -> list[str]:
    now = timezone.now()
    return [
        REJECTED_KEY.format(minute=(now - timedelta(minutes=m)).strftime("%Y%m%d%H%M"))
        for m in range(REJECTED_WINDOW)
    ]


def rejected_last_hour() -> int:
    """Webhook posts rejected (bad, stale or missing signature) in the last hour: one cache
    read. Shown on the dunning queue: a wrong signing secret loses every event."""
    return sum(int(n or 0) for n in cache.get_many(_rejected_keys()).values())


def _count_rejected() -> int:
    """Count one rejected post; returns the count over the last hour."""
    key = _rejected_keys()[0]
    cache.add(key, 0, timeout=2 * REJECTED_WINDOW * 60)
    with contextlib.suppress(ValueError):  # expired in between
        cache.incr(key)
    return rejected_last_hour()


@login_not_required
@csrf_exempt
@require_POST
def stripe_webhook(request):
    """Stripe's events: verified with the endpoint secret, applied once. A bad signature is
    400 and logged as a warning, with a counter (someone is forging events or the secret is
    wrong). Not audited: anyone may post here, and each audit entry locks the chain's head,
    so a flood of forgeries would stall every audited action."""
    signature = request.headers.get("Stripe-Signature", "")
    try:
        event = stripe_client.verify_event(request.body, signature)
    except PaymentError as exc:
        rejected = _count_rejected()
        log.warning(
            "stripe webhook rejected from %s: %s (%d in the last hour)",
            for_request(request),
            exc,
            rejected,
        )
        return HttpResponseBadRequest(str(exc))
    try:
        result = payments.handle_event(event)
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        log.warning("stripe event %s not applied: %s", event.get("id"), exc)
        return HttpResponseBadRequest("The event cannot be applied.")
    return HttpResponse(result, content_type="text/plain")
