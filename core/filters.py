import django_filters
from django.db.models import Q

from core import kinds
from core.models import Operation


class OperationFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Operation.State.choices)
    kind = django_filters.CharFilter()  # exact, so the (kind, created_at) index serves it
    q = django_filters.CharFilter(method="search", label="Search")

    class Meta:
        model = Operation
        fields = ["state", "kind"]

    def search(self, queryset, name, value):
        """The target's name, or the operation's kind or title. Kinds are matched as whole
        values, so on PostgreSQL both halves use an index (see migration 0004)."""
        q = Q(target_label__icontains=value)
        matched = kinds.matching(value) + [value.strip().lower()]
        return queryset.filter(q | Q(kind__in=matched))
