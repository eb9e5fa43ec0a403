"""One FilterSet per model, shared by the portal and the API."""

import django_filters

from accounts.models import User
from core.models import AuditEntry


class UserFilter(django_filters.FilterSet):
    class Meta:
        model = User
        fields = ["role", "is_active"]


class AuditFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = AuditEntry
        fields = ["action", "object_type", "object_id"]
