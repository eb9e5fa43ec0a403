"""One FilterSet per model, shared by the portal and the API."""

import django_filters
from django.db.models import Q

from dns.models import Record, Zone
from dns.validation import RECORD_TYPES


class ZoneFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Zone.Status.choices)

    class Meta:
        model = Zone
        fields = ["status"]


class RecordFilter(django_filters.FilterSet):
    zone = django_filters.UUIDFilter(field_name="zone__uuid")
    type = django_filters.ChoiceFilter(choices=[(t, t) for t in RECORD_TYPES])
    name = django_filters.CharFilter(field_name="name")
    q = django_filters.CharFilter(method="search", label="Search")

    class Meta:
        model = Record
        fields = ["zone", "type", "name"]

    def search(self, queryset, name, value):
        value = value.strip().lower()[:253]
        if not value:
            return queryset
        # Names are stored lowercase: a prefix search uses the (zone, name, ...) index.
        return queryset.filter(Q(name__startswith=value) | Q(content__contains=value))
