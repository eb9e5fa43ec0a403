"""Card payment routes under /api/v1/ (included by billing/api/urls.py, beside billing's own)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from billing.api.payments import PayInvoiceView, PaymentCardViewSet, ReconcilePaymentView

router = SimpleRouter()
router.register("payment-methods", PaymentCardViewSet, basename="payment-method")
urlpatterns = [
    path("invoices/<uuid:uuid>/pay/", PayInvoiceView.as_view(), name="invoice-pay"),
    path(
        "payments/<uuid:uuid>/reconcile/",
        ReconcilePaymentView.as_view(),
        name="payment-reconcile",
    ),
    *router.urls,
]
