import django_filters
from django.db.models import Q

from websites.certificates.models import Certificate


class CertificateFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=Certificate.Status.choices)
    source = django_filters.ChoiceFilter(choices=Certificate.Source.choices)

    class Meta:
        model = Certificate
        fields = ["status", "source"]

    def search(self, qs, _name, value):
        return qs.filter(Q(website__domain__icontains=value) | Q(domains__icontains=value))
