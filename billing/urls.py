"""Billing pages, mounted at /billing/."""

from django.urls import path

from billing import views

urlpatterns = [
    path("", views.InvoiceList.as_view(), name="billing"),
    path("usage/", views.usage, name="billing_usage"),
    path("revenue/", views.revenue, name="billing_revenue"),
    path("profile/", views.profile, name="billing_profile"),
    path("invoices/<uuid:uuid>/", views.InvoiceDetail.as_view(), name="billing_invoice"),
    path("invoices/<uuid:uuid>/pdf/", views.invoice_pdf, name="billing_invoice_pdf"),
    path("invoices/<uuid:uuid>/payment/", views.RecordPayment.as_view(), name="billing_payment"),
    path("invoices/<uuid:uuid>/credit/", views.CreditInvoice.as_view(), name="billing_credit"),
    path("invoices/<uuid:uuid>/void/", views.VoidInvoice.as_view(), name="billing_void"),
]
