"""One FilterSet per model, shared by the portal and the API."""

import django_filters
from django.db.models import Q

from websites.databases.models import (
    CustomerDatabase,
    DatabaseGrant,
    DatabaseServer,
    DatabaseUser,
    Status,
)


class DatabaseFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=Status.choices)
    db_server = django_filters.UUIDFilter(field_name="db_server__uuid")

    class Meta:
        model = CustomerDatabase
        fields = ["status", "db_server"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(owner__email__icontains=value))


class DatabaseUserFilter(DatabaseFilter):
    class Meta:
        model = DatabaseUser
        fields = ["status", "db_server"]


class DatabaseGrantFilter(django_filters.FilterSet):
    database = django_filters.UUIDFilter(field_name="database__uuid")
    user = django_filters.UUIDFilter(field_name="user__uuid")

    class Meta:
        model = DatabaseGrant
        fields = ["database", "user", "privileges", "status"]


class DatabaseServerFilter(django_filters.FilterSet):
    class Meta:
        model = DatabaseServer
        fields = ["engine", "accepts_new"]
