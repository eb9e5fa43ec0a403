"""One FilterSet per model, shared by the portal and the API."""

import django_filters
from django.db.models import Q

from websites.models import Website


class WebsiteFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=Website.Status.choices)
    sort = django_filters.OrderingFilter(
        fields=(("domain", "domain"), ("status", "status"), ("created_at", "created")),
        field_labels={"domain": "Domain", "status": "Status", "created_at": "Created"},
    )

    class Meta:
        model = Website
        fields = ["status"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(domain__icontains=value) | Q(aliases__icontains=value))
