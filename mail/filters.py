"""One FilterSet per model, shared by the portal and the API."""

import django_filters
from django.db.models import Q

from mail.models import MailAlias, Mailbox, MailDomain, Status


class MailDomainFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=Status.choices)

    class Meta:
        model = MailDomain
        fields = ["status", "suspended"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(domain__icontains=value) | Q(owner__email__icontains=value))


class MailboxFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="local_part", lookup_expr="icontains")
    domain = django_filters.UUIDFilter(field_name="domain__uuid")
    status = django_filters.ChoiceFilter(choices=Status.choices)

    class Meta:
        model = Mailbox
        fields = ["domain", "status", "suspended"]


class MailAliasFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="local_part", lookup_expr="icontains")
    domain = django_filters.UUIDFilter(field_name="domain__uuid")

    class Meta:
        model = MailAlias
        fields = ["domain"]
