from rest_framework import serializers

from core.api.serializers import ServiceSerializer
from core.policy import CHANGE, restrict
from monitoring import services
from monitoring.models import (
    Alert,
    AlertRule,
    Check,
    Delivery,
    MaintenanceWindow,
    NotificationChannel,
)
from monitoring.series import METRICS, RANGES
from servers.models import Server


class LatestSerializer(serializers.ModelSerializer):
    """A server's status and its newest values (the dashboard card)."""

    server = serializers.UUIDField(source="uuid", read_only=True)
    at = serializers.DateTimeField(source="monitor.last_sample_at", allow_null=True)
    values = serializers.SerializerMethodField()

    class Meta:
        model = Server
        fields = ["server", "name", "status", "at", "values"]

    def get_values(self, server) -> dict[str, float]:
        monitor = getattr(server, "monitor", None)
        return dict(monitor.latest) if monitor is not None else {}


class SeriesQuerySerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=list(RANGES), default="1h")
    step = serializers.IntegerField(required=False, min_value=30, max_value=86400 * 30)
    metrics = serializers.CharField(
        required=False, help_text=f"Comma-separated, from: {', '.join(METRICS)}."
    )


class PointsSerializer(serializers.Serializer):
    min = serializers.ListField(child=serializers.FloatField(allow_null=True))
    avg = serializers.ListField(child=serializers.FloatField(allow_null=True))
    max = serializers.ListField(child=serializers.FloatField(allow_null=True))


class SeriesSerializer(serializers.Serializer):
    server = serializers.UUIDField()
    range = serializers.CharField()
    step = serializers.IntegerField(help_text="Seconds per point.")
    source = serializers.CharField(help_text="raw, 300s or 3600s: the table read.")
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    t = serializers.ListField(child=serializers.IntegerField(), help_text="Unix times.")
    metrics = serializers.DictField(child=PointsSerializer())


class ChannelSerializer(ServiceSerializer):
    """A notification channel. ``secret`` (webhook signing secret, Telegram bot token) is
    write-only and never returned."""

    secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=200, trim_whitespace=False
    )
    create_service = staticmethod(services.do_create_channel)
    update_service = staticmethod(services.do_update_channel)

    class Meta:
        model = NotificationChannel
        fields = ["uuid", *services.CHANNEL_FIELDS, "secret", "created_at"]
        read_only_fields = ["uuid", "created_at"]

    def to_representation(self, channel):
        data = super().to_representation(channel)
        request = self.context.get("request")
        # A webhook's URL whole for its owner, redacted for anyone else it is shown to (a
        # PATCH sending that back keeps the stored URL).
        data["target"] = channel.target_for(getattr(request, "user", None))
        return data


class RuleSerializer(ServiceSerializer):
    kind = serializers.ChoiceField(choices=[])
    server = serializers.SlugRelatedField(
        slug_field="uuid", queryset=Server.objects.none(), required=False, allow_null=True
    )
    channels = serializers.SlugRelatedField(
        slug_field="uuid", many=True, queryset=NotificationChannel.objects.none(), required=False
    )
    create_service = staticmethod(services.do_create_rule)
    update_service = staticmethod(services.do_update_rule)

    class Meta:
        model = AlertRule
        fields = ["uuid", *services.RULE_FIELDS, "created_at"]
        read_only_fields = ["uuid", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from monitoring.alerts import kind_choices

        self.fields["kind"].choices = kind_choices()
        request = self.context.get("request")
        if request is not None:
            self.fields["server"].queryset = restrict(Server, request.user)
            self.fields["channels"].child_relation.queryset = restrict(
                NotificationChannel, request.user, CHANGE
            )


class AlertSerializer(serializers.ModelSerializer):
    rule = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    server = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    acknowledged_by = serializers.SlugRelatedField(
        slug_field="email", read_only=True, allow_null=True
    )

    class Meta:
        model = Alert
        fields = [
            "uuid",
            "rule",
            "rule_name",
            "kind",
            "label",
            "server",
            "state",
            "message",
            "value",
            "started_at",
            "resolved_at",
            "acknowledged_at",
            "acknowledged_by",
            "silenced_until",
        ]
        read_only_fields = fields


class SilenceSerializer(serializers.Serializer):
    until = serializers.DateTimeField(allow_null=True, help_text="null lifts the silence.")


class DeliverySerializer(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    alert = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)

    class Meta:
        model = Delivery
        fields = [
            "uuid",
            "channel",
            "alert",
            "event",
            "state",
            "attempts",
            "last_error",
            "response_status",
            "created_at",
            "next_attempt_at",
            "sent_at",
        ]
        read_only_fields = fields


CHECK_READ_ONLY = [
    "uuid",
    "status",
    "failures",
    "last_checked_at",
    "next_check_at",
    "last_response_ms",
    "last_error",
    "tls_days_left",
    "created_at",
]


class CheckSerializer(ServiceSerializer):
    uptime = serializers.SerializerMethodField(help_text="Percent of good runs, 24h and 30d.")
    create_service = staticmethod(services.do_create_check)
    update_service = staticmethod(services.do_update_check)

    class Meta:
        model = Check
        fields = [*CHECK_READ_ONLY[:1], *services.CHECK_FIELDS, *CHECK_READ_ONLY[1:], "uptime"]
        read_only_fields = CHECK_READ_ONLY

    def get_uptime(self, check) -> dict[str, float | None]:
        shares = self.context.get("uptime")
        if shares is None:  # one object: its own query
            from monitoring.checks import uptime

            shares = uptime([check])
        return shares.get(check.pk, {"24h": None, "30d": None})


class MaintenanceWindowSerializer(ServiceSerializer):
    server = serializers.SlugRelatedField(
        slug_field="uuid", queryset=Server.objects.none(), required=False, allow_null=True
    )
    state = serializers.CharField(source="current_state", read_only=True)
    next_start = serializers.DateTimeField(read_only=True, allow_null=True)
    create_service = staticmethod(services.do_create_window)
    update_service = staticmethod(services.do_update_window)

    class Meta:
        model = MaintenanceWindow
        fields = ["uuid", *services.WINDOW_FIELDS, "state", "next_start", "created_at"]
        read_only_fields = ["uuid", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["server"].queryset = restrict(Server, request.user, CHANGE)
