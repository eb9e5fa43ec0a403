"""Billing pages, mounted at /billing/: invoices (list, page, PDF, staff actions), usage
against the plan, and for staff who may work invoices, revenue and unpaid invoices."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Sum
from django.db.models.functions import TruncMonth
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from billing import documents, services
from billing.filters import InvoiceFilter, UsageFilter
from billing.forms import CreditForm, PaymentForm, ProfileForm, VoidForm
from billing.models import CREDIT, RECORD_PAYMENT, VOID, Invoice, UsageKind, UsageRecord
from billing.usage import BillingPeriod
from core.generic import PortalDetailView, PortalFormActionView, PortalListView, get_for_user
from core.policy import VIEW, may, restrict
from core.sections import sections_for
from core.tables import Column, Table

INVOICE_TABLE = Table(
    columns=(
        Column("Invoice"),
        Column("Customer", "hidden md:table-cell"),
        Column("Period", "hidden sm:table-cell"),
        Column("Total"),
        Column("State"),
        Column("Due", "hidden sm:table-cell"),
    ),
    row_template="billing/partials/invoice_row.html",
    empty_icon="scroll-text",
    empty_text="No invoices yet.",
    testid="invoices-table",
)
INVOICE_ACTIONS = (RECORD_PAYMENT, CREDIT, VOID)


class InvoiceList(PortalListView):
    model = Invoice
    filterset_class = InvoiceFilter
    table = INVOICE_TABLE
    template_name = "billing/invoice_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("customer").order_by("-created_at", "-id")


class InvoiceDetail(PortalDetailView):
    model = Invoice
    template_name = "billing/invoice_detail.html"
    actions = INVOICE_ACTIONS

    def optimise(self, qs):
        return qs.select_related("customer", "issuer", "credits")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        invoice = self.object
        ctx["lines"] = list(invoice.lines.all())
        ctx["payments"] = list(restrict(invoice.payments.all(), self.request.user, VIEW))
        ctx["credit_notes"] = list(invoice.credit_notes.all())
        # Other modules' parts of the page (billing.payments_views: Pay now, dunning steps).
        ctx["sections"] = sections_for("billing.invoice_detail", invoice, self.request.user)
        ctx["payment_form"], ctx["credit_form"], ctx["void_form"] = (
            PaymentForm(),
            CreditForm(),
            VoidForm(),
        )
        return ctx


@login_required
def invoice_pdf(request, uuid):
    invoice = get_for_user(Invoice, request.user, VIEW, uuid=uuid)
    response = HttpResponse(documents.render_pdf(invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{documents.filename(invoice)}"'
    return response


class RecordPayment(PortalFormActionView):
    model, action, form_class = Invoice, RECORD_PAYMENT, PaymentForm
    service = staticmethod(services.do_record_manual_payment)
    message = "Payment recorded."


class CreditInvoice(PortalFormActionView):
    model, action, form_class = Invoice, CREDIT, CreditForm
    service = staticmethod(services.do_credit_invoice)
    message = "Credit note issued."


class VoidInvoice(PortalFormActionView):
    model, action, form_class = Invoice, VOID, VoidForm
    service = staticmethod(services.do_void)
    message = "Invoice voided."


def usage_bars(records) -> list[dict]:
    """One bar per record: used against what the plan includes (SVG widths in %)."""
    bars = []
    for r in records:
        limit = r.included if r.included and r.kind != UsageKind.VPS_HOURS else None
        share = float(r.quantity / limit) if limit else None
        bars.append(
            {
                "record": r,
                "limit": limit,
                "width": min(100.0, share * 100) if share is not None else 100.0,
                "over": share is not None and share > 1,
                "unmetered": limit is None,
            }
        )
    return bars


@login_required
def profile(request):
    """The signed-in user's invoice address, country (its tax rate) and tax id."""
    from django.contrib import messages
    from django.core.exceptions import ValidationError

    from core.generic import form_errors_from, redirect_htmx_aware

    current = services.profile_of(request.user)
    form = ProfileForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        fresh = type(current).objects.get(pk=current.pk)
        try:
            services.do_update_profile(fresh, actor=request.user, data=dict(form.cleaned_data))
        except ValidationError as exc:
            form_errors_from(form, exc)
        else:
            messages.success(request, "Billing details saved.")
            return redirect_htmx_aware(request, reverse("billing_profile"))
    status = 400 if form.errors else 200
    return render(request, "billing/profile.html", {"form": form}, status=status)


@login_required
def usage(request):
    """Usage of a period (``?month=YYYY-MM``, default this month) against the plan: the
    signed-in user's own, or, for those who see more (staff, billing, resellers), every
    visible account's (filter ``account``)."""
    try:
        period = BillingPeriod.parse(request.GET.get("month") or f"{timezone.now():%Y-%m}")
    except (ValueError, TypeError) as exc:
        raise Http404 from exc
    qs = restrict(UsageRecord, request.user, VIEW).filter(period_start=period.start)
    filterset = UsageFilter(request.GET, queryset=qs.select_related("account"), request=request)
    records = list(filterset.qs.order_by("account__email", "kind", "id")[:500])
    return render(
        request,
        "billing/usage.html",
        {"period": period, "bars": usage_bars(records), "filterset": filterset},
    )


@login_required
def revenue(request):
    """Revenue per month and unpaid invoices: for those who may work invoices."""
    if not may(request.user, RECORD_PAYMENT, Invoice):
        raise Http404
    invoices = restrict(Invoice, request.user, RECORD_PAYMENT).exclude(
        state__in=[Invoice.State.DRAFT, Invoice.State.VOID]
    )
    months = (
        invoices.filter(kind=Invoice.Kind.INVOICE)
        .annotate(month=TruncMonth("issued_at"))
        .values("month", "currency")
        .annotate(issued=Sum("total"), paid=Sum("amount_paid"), count=Count("id"))
        .order_by("-month", "currency")[:24]
    )
    unpaid = (
        invoices.filter(kind=Invoice.Kind.INVOICE, state=Invoice.State.ISSUED)
        .select_related("customer")
        .order_by("due_date", "id")[:100]
    )
    today = timezone.now().date()
    rows = list(months)
    peak = max([r["issued"] for r in rows] + [Decimal(1)])
    for r in rows:
        r["width"] = float(r["issued"] / peak * 100)
    return render(
        request,
        "billing/revenue.html",
        {"months": rows, "unpaid": list(unpaid), "today": today},
    )
