"""One FilterSet per model, shared by the portal and the API."""

import django_filters

from vps.models import Vps


class VpsFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Vps.State.choices)
    hostname = django_filters.CharFilter(field_name="hostname", lookup_expr="istartswith")

    class Meta:
        model = Vps
        fields = ["state", "hostname"]
