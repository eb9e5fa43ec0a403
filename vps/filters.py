"""One FilterSet per model, shared by the portal and the API."""

import django_filters

from vps.models import Hypervisor, IpPool, Vps


class VpsFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Vps.State.choices)
    hostname = django_filters.CharFilter(field_name="hostname", lookup_expr="istartswith")

    class Meta:
        model = Vps
        fields = ["state", "hostname"]


class HypervisorFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Hypervisor.Status.choices)
    enabled = django_filters.BooleanFilter()

    class Meta:
        model = Hypervisor
        fields = ["status", "enabled"]


class IpPoolFilter(django_filters.FilterSet):
    # The hypervisor's public id, as its page and the API name it.
    hypervisor = django_filters.UUIDFilter(field_name="hypervisor__uuid")

    class Meta:
        model = IpPool
        fields = ["hypervisor"]
