from rest_framework import serializers

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
