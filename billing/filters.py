"""One FilterSet per model, shared by the portal and the API."""

import django_filters
from django.db.models import Q

from billing.models import Invoice, Payment, UsageKind, UsageRecord


class InvoiceFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Invoice.State.choices)
    kind = django_filters.ChoiceFilter(choices=Invoice.Kind.choices)
    customer = django_filters.UUIDFilter(field_name="customer__uuid")
    period = django_filters.DateFilter(field_name="period_start")
    q = django_filters.CharFilter(method="search", label="Search")

    class Meta:
        model = Invoice
        fields = ["state", "kind", "customer", "period"]

    def search(self, queryset, name, value):
        """The invoice's number or its customer's email (the rows stay those the user may
        see: the queryset is already restricted)."""
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(number__icontains=value) | Q(customer__email__icontains=value))


class PaymentFilter(django_filters.FilterSet):
    invoice = django_filters.UUIDFilter(field_name="invoice__uuid")
    method = django_filters.ChoiceFilter(choices=Payment.Method.choices)
    state = django_filters.ChoiceFilter(choices=Payment.State.choices)

    class Meta:
        model = Payment
        fields = ["invoice", "method", "state"]


class UsageFilter(django_filters.FilterSet):
    period = django_filters.DateFilter(field_name="period_start")
    kind = django_filters.ChoiceFilter(choices=UsageKind.choices)
    account = django_filters.UUIDFilter(field_name="account__uuid")

    class Meta:
        model = UsageRecord
        fields = ["period", "kind", "account"]
