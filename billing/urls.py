"""Billing pages, mounted at /billing/."""

from django.urls import include, path

from billing import views

urlpatterns = [
    path("", views.InvoiceList.as_view(), name="billing"),
    path("usage/", views.usage, name="billing_usage"),
    path("revenue/", views.revenue, name="billing_revenue"),
    path("profile/", views.profile, name="billing_profile"),
    path("settings/", views.billing_settings, name="billing_settings"),
    path("tax-rates/", views.TaxRateList.as_view(), name="billing_tax_rates"),
    path("tax-rates/new/", views.TaxRateEdit.as_view(), name="billing_tax_rate_add"),
    path("tax-rates/<int:pk>/", views.TaxRateEdit.as_view(), name="billing_tax_rate"),
    path(
        "tax-rates/<int:pk>/delete/", views.TaxRateDelete.as_view(), name="billing_tax_rate_delete"
    ),
    path("invoices/<uuid:uuid>/", views.InvoiceDetail.as_view(), name="billing_invoice"),
    path("invoices/<uuid:uuid>/pdf/", views.invoice_pdf, name="billing_invoice_pdf"),
    path("invoices/<uuid:uuid>/payment/", views.RecordPayment.as_view(), name="billing_payment"),
    path("invoices/<uuid:uuid>/credit/", views.CreditInvoice.as_view(), name="billing_credit"),
    path("invoices/<uuid:uuid>/void/", views.VoidInvoice.as_view(), name="billing_void"),
    # Payment pages, cards, the dunning queue and Stripe's webhook (their own module).
    path("payments/", include("billing.payments_urls")),
]
