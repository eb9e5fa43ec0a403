"""Payment pages: a customer's cards (add with Stripe.js, default, remove), "Pay now" on an
invoice, the staff dunning queue, and Stripe's webhook endpoint (no session: it is
authenticated by its signature, so it is exempt from CSRF and login)."""

from __future__ import annotations

import logging

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

from billing import payments, stripe_client
from billing.models import RECORD_PAYMENT, Invoice
from billing.payment_models import DunningStep, DunningSuspension, PaymentCard, StripeAccount
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
    return {
        "invoice": invoice,
        "may_pay": invoice.state == Invoice.State.ISSUED
        and invoice.kind == Invoice.Kind.INVOICE
        and invoice.customer_id == user.pk,
        "failed": list(
            invoice.payments.filter(method="stripe", state="failed").order_by("received_at")
        ),
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
        return JsonResponse(payments.start_card_setup(request.user, actor=request.user))
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)


@login_required
@require_POST
def card_save(request):
    try:
        payments.do_save_card(
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
    payments.do_set_default_card(card, actor=request.user)
    messages.success(request, "Default card changed.")
    return redirect_htmx_aware(request, reverse("billing_payment_methods"))


@login_required
@require_POST
def card_remove(request, uuid):
    card = get_for_user(PaymentCard, request.user, CHANGE, uuid=uuid)
    try:
        payments.do_remove_card(card, actor=request.user)
        messages.success(request, "Card removed.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect_htmx_aware(request, reverse("billing_payment_methods"))


@login_required
@require_POST
def pay_invoice(request, uuid):
    """Pay now: the invoice's balance charged to the default card (or the one chosen)."""
    invoice = get_for_user(Invoice, request.user, VIEW, uuid=uuid)
    card = None
    if request.POST.get("card"):
        try:
            card = get_for_user(PaymentCard, request.user, CHANGE, uuid=request.POST["card"])
        except ValidationError as exc:  # not a UUID
            raise Http404 from exc
    try:
        payment = payments.do_pay_invoice(invoice, actor=request.user, card=card)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if payment.state == payment.State.SUCCEEDED:
            messages.success(request, f"Paid: {payment.amount} {payment.currency}.")
        else:
            messages.info(request, "The payment is being processed; the invoice shows it.")
    return redirect_htmx_aware(request, invoice_url(invoice))


@login_required
@require_GET
def dunning_queue(request):
    """Staff who may record payments: overdue invoices (or ones dunning acted on) and what
    dunning did about each."""
    if not may(request.user, RECORD_PAYMENT, Invoice):
        raise Http404
    today = timezone.localdate()
    invoices = (
        restrict(Invoice, request.user, VIEW)
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
    return render(request, "billing/dunning_queue.html", {"rows": rows})


REJECTED_KEY = "billing:stripe-webhook-rejected:{hour}"


def _count_rejected() -> int:
    """Rejected webhook posts this hour (in the cache: cheap, and it never blocks)."""
    key = REJECTED_KEY.format(hour=timezone.now().strftime("%Y%m%d%H"))
    cache.add(key, 0, timeout=2 * 3600)
    try:
        return cache.incr(key)
    except ValueError:  # expired in between
        return 0


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
            "stripe webhook rejected from %s: %s (%d in this hour)",
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
