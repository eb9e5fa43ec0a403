"""One FilterSet per model, shared by the portal and the API."""

import django_filters

from monitoring.models import Alert, AlertRule, Check, MaintenanceWindow, NotificationChannel


class AlertFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Alert.State.choices)
    kind = django_filters.CharFilter()
    rule = django_filters.UUIDFilter(field_name="rule__uuid")

    class Meta:
        model = Alert
        fields = ["state", "kind", "rule"]


class RuleFilter(django_filters.FilterSet):
    kind = django_filters.CharFilter()

    class Meta:
        model = AlertRule
        fields = ["kind", "enabled"]


class ChannelFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=NotificationChannel.Kind.choices)

    class Meta:
        model = NotificationChannel
        fields = ["kind", "enabled"]


class CheckFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Check.Kind.choices)
    status = django_filters.ChoiceFilter(choices=Check.Status.choices)

    class Meta:
        model = Check
        fields = ["kind", "status", "enabled", "public"]


class MaintenanceWindowFilter(django_filters.FilterSet):
    scope = django_filters.ChoiceFilter(choices=MaintenanceWindow.Scope.choices)
    repeat = django_filters.ChoiceFilter(choices=MaintenanceWindow.Repeat.choices)
    server = django_filters.UUIDFilter(field_name="server__uuid")

    class Meta:
        model = MaintenanceWindow
        fields = ["scope", "repeat", "server"]
