"""One FilterSet per model, shared by the portal and the API."""

import django_filters

from servers.models import FirewallRule, Server


class ServerFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")

    class Meta:
        model = Server
        fields = ["status", "kind", "transport"]

    def search(self, queryset, name, value):
        return queryset.filter(name__icontains=value) | queryset.filter(address__icontains=value)


class FirewallRuleFilter(django_filters.FilterSet):
    server = django_filters.UUIDFilter(field_name="server__uuid")

    class Meta:
        model = FirewallRule
        fields = ["server", "action", "protocol"]
