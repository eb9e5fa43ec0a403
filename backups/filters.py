"""One FilterSet per model, shared by the portal and the API."""

import django_filters

from backups.models import BackupJob, BackupRun, BackupTarget


class BackupTargetFilter(django_filters.FilterSet):
    class Meta:
        model = BackupTarget
        fields = ["kind", "status"]


class BackupJobFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        field_name="account__name", lookup_expr="icontains", label="Search"
    )
    target = django_filters.UUIDFilter(field_name="target__uuid")

    class Meta:
        model = BackupJob
        fields = ["last_status", "enabled", "target"]


class BackupRunFilter(django_filters.FilterSet):
    job = django_filters.UUIDFilter(field_name="job__uuid")

    class Meta:
        model = BackupRun
        fields = ["state", "job", "forgotten"]
