"""One FilterSet per model, shared by the portal and the API."""

import django_filters
from django.db.models import Q

from servers.models import FirewallRule, Server


class ServerFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=Server.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Server.Kind.choices)
    sort = django_filters.OrderingFilter(
        fields=(("name", "name"), ("status", "status"), ("last_seen_at", "last_seen")),
        field_labels={"name": "Name", "status": "Status", "last_seen_at": "Last seen"},
    )

    class Meta:
        model = Server
        fields = ["status", "kind", "transport"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(address__icontains=value) | Q(location__icontains=value)
        )


class FirewallRuleFilter(django_filters.FilterSet):
    server = django_filters.UUIDFilter(field_name="server__uuid")

    class Meta:
        model = FirewallRule
        fields = ["server", "action", "protocol"]
