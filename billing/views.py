"""Billing pages, mounted at /billing/: invoices (list, page, PDF, the actions of staff and
of the issuing reseller), usage against the plan, revenue and unpaid invoices for those who
may work invoices, and the billing settings and tax rates for those who may change them."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Sum
from django.db.models.functions import TruncMonth
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.utils import timezone

from billing import documents, services
from billing.filters import InvoiceFilter, UsageFilter
from billing.forms import (
    BillingSettingsForm,
    CreditForm,
    PaymentForm,
    ProfileForm,
    TaxRateForm,
    VoidForm,
)
from billing.models import (
    CREDIT,
    RECORD_PAYMENT,
    VOID,
    BillingSettings,
    Invoice,
    TaxRate,
    UsageKind,
    UsageRecord,
)
from billing.rating import settings_for
from billing.usage import BillingPeriod
from core.generic import (
    PortalDeleteView,
    PortalDetailView,
    PortalEditView,
    PortalFormActionView,
    PortalListView,
    form_errors_from,
    get_for_user,
    redirect_htmx_aware,
)
from core.policy import CHANGE, DELETE, VIEW, may, restrict
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


# Billing settings and tax rates --------------------------------------------------------

# Who the issuer is: a reseller's new settings never start with the panel's.
ISSUER_IDENTITY = frozenset({"legal_name", "address", "tax_id"})


def settings_to_change(user) -> BillingSettings:
    """The billing settings ``user`` works on: the panel's for those who may change them
    (billing staff, administrators); else the user's own as an issuer (a reseller, which
    bills its customers), unsaved until first saved and then starting from the panel's terms
    without the panel's name, address and tax id. 404 for everyone else."""
    if not may(user, CHANGE, BillingSettings):
        raise Http404
    panel = settings_for(None)  # the panel's row, made with the defaults on first use
    rows = restrict(BillingSettings, user, CHANGE)
    if rows.filter(pk=panel.pk).exists():
        return BillingSettings.objects.get(pk=panel.pk)
    own = rows.filter(issuer=user).first()
    if own is not None:
        return own
    kept = [f for f in services.SETTINGS_FIELDS if f not in ISSUER_IDENTITY]
    return BillingSettings(issuer=user, **{f: getattr(panel, f) for f in kept})


@login_required
def billing_settings(request):
    """How invoices are issued: currency, terms, reminders, suspension, who issues them,
    number prefixes and the prices of what plans do not include."""
    current = settings_to_change(request.user)
    form = BillingSettingsForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        fresh = settings_to_change(request.user)  # the form wrote onto ``current``
        try:
            services.do_update_settings(fresh, actor=request.user, data=dict(form.cleaned_data))
        except ValidationError as exc:
            form_errors_from(form, exc)
        else:
            messages.success(request, "Billing settings saved.")
            return redirect_htmx_aware(request, reverse("billing_settings"))
    status = 400 if form.errors else 200
    ctx = {"form": form, "own": current.issuer_id is not None}
    return render(request, "billing/settings.html", ctx, status=status)


TAX_RATE_TABLE = Table(
    columns=(
        Column("Country"),
        Column("Name"),
        Column("Rate"),
        Column("Updated", "hidden sm:table-cell"),
    ),
    row_template="billing/partials/tax_rate_row.html",
    empty_icon="scroll-text",
    empty_text="No tax rates: invoices carry no tax until one is added.",
    testid="tax-rates-table",
)


class TaxRateList(PortalListView):
    """Those who may read tax rates (staff); the rest get 404, not an empty list."""

    model = TaxRate
    table = TAX_RATE_TABLE
    template_name = "billing/tax_rate_list.html"
    partial_template_name = "components/table.html"
    paginate_by = 100

    def get(self, request, *args, **kwargs):
        if not may(request.user, VIEW, TaxRate):
            raise Http404
        return super().get(request, *args, **kwargs)

    def optimise(self, qs):
        return qs.order_by("country")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["may_change"] = may(self.request.user, CHANGE, TaxRate)
        return ctx


class _TaxRateById:
    """Tax rates have no uuid: the route's ``pk`` is what the generic views call ``uuid``."""

    def dispatch(self, request, *args, pk=None, **kwargs):
        return super().dispatch(request, *args, uuid=pk, **kwargs)


class TaxRateEdit(_TaxRateById, PortalEditView):
    model, form_class = TaxRate, TaxRateForm
    template_name = "billing/tax_rate_form.html"
    create_service = staticmethod(services.do_create_tax_rate)
    update_service = staticmethod(services.do_update_tax_rate)
    created_message = "Tax rate {object} added."

    def get_object(self, request, uuid):
        if uuid is None:
            return super().get_object(request, uuid)  # adding: the model's ``add`` rule
        return get_for_user(TaxRate, request.user, CHANGE, pk=uuid)

    def success_url(self, obj) -> str:
        return reverse("billing_tax_rates")


class TaxRateDelete(_TaxRateById, PortalDeleteView):
    model = TaxRate
    delete_service = staticmethod(services.do_delete_tax_rate)
    success_url = reverse_lazy("billing_tax_rates")

    def get_object(self, request, uuid):
        return get_for_user(TaxRate, request.user, DELETE, pk=uuid)
