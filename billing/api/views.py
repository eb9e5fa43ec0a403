from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from billing import documents, services
from billing.api.serializers import (
    InvoiceListSerializer,
    InvoiceSerializer,
    ManualPaymentSerializer,
    PaymentSerializer,
    UsageRecordSerializer,
)
from billing.filters import InvoiceFilter, PaymentFilter, UsageFilter
from billing.models import RECORD_PAYMENT, Invoice, Payment, UsageRecord
from core.api.viewsets import PolicyViewSetMixin
from core.policy import VIEW


class InvoiceViewSet(PolicyViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Invoices and credit notes you may see (yours; a reseller's customers' and those it
    issued; all for staff and billing). ``pdf`` downloads one; ``record_payment``
    (administrators, billing staff, and the reseller that issued the invoice) records money
    received by hand."""

    queryset = Invoice.objects.all()
    filterset_class = InvoiceFilter
    search_fields = ["number"]
    ordering_fields = ["created_at", "due_date", "total"]

    def get_serializer_class(self):
        return InvoiceListSerializer if self.action == "list" else InvoiceSerializer

    def optimise(self, qs):
        qs = qs.select_related("customer", "issuer", "credits").order_by("-created_at", "-id")
        return qs.prefetch_related("lines") if self.action != "list" else qs

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="PDF")
        }
    )
    @action(detail=True, methods=["get"], policy_action=VIEW)
    def pdf(self, request, uuid=None):
        invoice = self.get_object()
        response = HttpResponse(documents.render_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{documents.filename(invoice)}"'
        return response

    @extend_schema(request=ManualPaymentSerializer, responses={201: PaymentSerializer})
    @action(detail=True, methods=["post"], policy_action=RECORD_PAYMENT, url_path="record-payment")
    def record_payment(self, request, uuid=None):
        invoice = self.get_object()
        body = ManualPaymentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        payment = services.do_record_manual_payment(
            invoice, actor=request.user, data=dict(body.validated_data)
        )
        return Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)


class PaymentViewSet(PolicyViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Payments recorded against the invoices you may see (read-only)."""

    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer
    filterset_class = PaymentFilter
    ordering_fields = ["received_at"]

    def optimise(self, qs):
        return qs.select_related("invoice").order_by("-received_at", "-id")


class UsageViewSet(PolicyViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Measured usage per account, period and kind, with its price once rated."""

    queryset = UsageRecord.objects.all()
    serializer_class = UsageRecordSerializer
    filterset_class = UsageFilter
    lookup_field = "id"

    def optimise(self, qs):
        return qs.select_related("account").order_by("-period_start", "kind", "id")
