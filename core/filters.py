import django_filters

from core.models import Operation


class OperationFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Operation.State.choices)
    kind = django_filters.CharFilter(lookup_expr="iexact")
    q = django_filters.CharFilter(method="search", label="Search")

    class Meta:
        model = Operation
        fields = ["state", "kind"]

    def search(self, queryset, name, value):
        return queryset.filter(target_label__icontains=value) | queryset.filter(
            kind__icontains=value
        )
