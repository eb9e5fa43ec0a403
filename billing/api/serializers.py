from decimal import Decimal

from rest_framework import serializers

from billing.api.payments import STAFF_PAYMENT_FIELDS, StaffPaymentFields
from billing.models import Invoice, InvoiceLine, Payment, UsageRecord


class InvoiceLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = InvoiceLine
        fields = ["position", "kind", "description", "quantity", "unit", "unit_price", "amount"]


class InvoiceSerializer(serializers.ModelSerializer):
    """An invoice or credit note as issued (read-only: issued invoices never change)."""

    customer = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    issuer = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    credits = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    balance = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "uuid", "number", "kind", "state", "customer", "issuer", "credits", "currency",
            "period_start", "period_end", "subtotal", "tax_total", "total", "tax_rate",
            "tax_name", "tax_country", "bill_from", "bill_to", "issued_at", "due_date",
            "amount_paid", "credited_total", "balance", "paid_at", "voided_at", "lines",
        ]  # fmt: skip
        read_only_fields = fields


class InvoiceListSerializer(InvoiceSerializer):
    """The list leaves the lines out (one query for the page)."""

    class Meta(InvoiceSerializer.Meta):
        fields = [f for f in InvoiceSerializer.Meta.fields if f != "lines"]
        read_only_fields = fields


class PaymentSerializer(StaffPaymentFields, serializers.ModelSerializer):
    invoice = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

    class Meta:
        model = Payment
        fields = [
            "uuid", "invoice", "amount", "currency", "method", "external_id", "state",
            "note", "received_at", "created_at", *STAFF_PAYMENT_FIELDS,
        ]  # fmt: skip
        read_only_fields = fields


class ManualPaymentSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    external_id = serializers.CharField(max_length=100, required=False, allow_blank=True)
    note = serializers.CharField(max_length=200, required=False, allow_blank=True)
    received_at = serializers.DateTimeField(required=False)


class UsageRecordSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    billed = serializers.SerializerMethodField()

    class Meta:
        model = UsageRecord
        fields = [
            "id", "account", "period_start", "period_end", "kind", "quantity", "included",
            "description", "source_type", "source_id", "unit_price", "amount", "billed",
        ]  # fmt: skip
        read_only_fields = fields

    def get_billed(self, record) -> bool:
        return record.line_id is not None
