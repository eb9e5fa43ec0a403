from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from core.api.viewsets import PolicyViewSetMixin
from core.policy import CHANGE, VIEW
from monitoring import services
from monitoring.api.serializers import (
    AlertSerializer,
    ChannelSerializer,
    CheckSerializer,
    DeliverySerializer,
    LatestSerializer,
    MaintenanceWindowSerializer,
    RuleSerializer,
    SeriesQuerySerializer,
    SeriesSerializer,
    SilenceSerializer,
)
from monitoring.checks import uptime
from monitoring.filters import (
    AlertFilter,
    ChannelFilter,
    CheckFilter,
    MaintenanceWindowFilter,
    RuleFilter,
)
from monitoring.models import Alert, AlertRule, Check, MaintenanceWindow, NotificationChannel
from monitoring.series import SeriesError, series
from servers.models import Server


class MetricsViewSet(
    PolicyViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Metrics of the servers you may see: the list gives each server's status and newest
    values; a server's entry gives its series for a range (1h, 24h, 7d, 30d, 1y), with
    min/avg/max per point, from the raw samples or the right rollup."""

    queryset = Server.objects.all()
    serializer_class = LatestSerializer
    ordering_fields = ["name", "status"]
    search_fields = ["name"]

    def optimise(self, qs):
        return qs.select_related("monitor")

    @extend_schema(
        parameters=[
            OpenApiParameter("range", str, enum=["1h", "24h", "7d", "30d", "1y"]),
            OpenApiParameter(
                "step",
                int,
                description="Seconds per point (a multiple of the "
                "range's source: 30 raw, 300 or 3600 rollups).",
            ),
            OpenApiParameter("metrics", str, description="Comma-separated metric names."),
        ],
        responses=SeriesSerializer,
    )
    def retrieve(self, request, uuid=None):
        server = self.get_object()
        query = SeriesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        names = [m.strip() for m in query.validated_data.get("metrics", "").split(",") if m.strip()]
        try:
            found = series(
                server,
                query.validated_data["range"],
                names or None,
                query.validated_data.get("step"),
            )
        except SeriesError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc
        # The serializer formats the scalars; the point lists (thousands of numbers, already
        # ints, floats and nulls) go out as they are: per-value field calls were a third of
        # a 30-day chart's time.
        body = SeriesSerializer({"server": server.uuid, **found.__dict__, "t": [], "metrics": {}})
        data = body.data
        data["t"], data["metrics"] = found.t, found.metrics
        return Response(data)


class ChannelViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Your notification channels (email, webhook, Telegram). ``test`` sends a test notice."""

    queryset = NotificationChannel.objects.all()
    serializer_class = ChannelSerializer
    filterset_class = ChannelFilter
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("owner")

    def perform_destroy(self, channel):
        services.do_delete_channel(channel, actor=self.request.user)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def test(self, request, uuid=None):
        """Send a test notice; its delivery (with attempts and errors) is returned."""
        delivery = services.do_send_test(self.get_object(), actor=request.user)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=DeliverySerializer(many=True))
    @action(
        detail=True, methods=["get"], policy_action=VIEW, pagination_class=None, filter_backends=[]
    )
    def deliveries(self, request, uuid=None):
        """The channel's last 50 deliveries."""
        found = self.get_object().deliveries.select_related("channel", "alert")[:50]
        return Response(DeliverySerializer(found, many=True).data)


class RuleViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Your alert rules; ``kind`` is one of the registered sources."""

    queryset = AlertRule.objects.all()
    serializer_class = RuleSerializer
    filterset_class = RuleFilter
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("server").prefetch_related("channels")

    def perform_destroy(self, rule):
        services.do_delete_rule(rule, actor=self.request.user)


class AlertViewSet(PolicyViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Alerts of your rules, firing and resolved (the history). ``acknowledge`` and
    ``silence`` act on one."""

    queryset = Alert.objects.all()
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    search_fields = ["label"]
    ordering_fields = ["started_at", "resolved_at"]

    def optimise(self, qs):
        return qs.select_related("rule", "server", "acknowledged_by")

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def acknowledge(self, request, uuid=None):
        alert = services.do_acknowledge_alert(self.get_object(), actor=request.user)
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=SilenceSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def silence(self, request, uuid=None):
        alert = self.get_object()
        body = SilenceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = services.do_silence_alert(alert, actor=request.user, data=dict(body.validated_data))
        return Response(AlertSerializer(alert).data)


class MaintenanceWindowViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Your maintenance windows: while one is open its servers are in maintenance (no
    alerts, never offline). ``state`` is open, scheduled or ended now."""

    queryset = MaintenanceWindow.objects.all()
    serializer_class = MaintenanceWindowSerializer
    filterset_class = MaintenanceWindowFilter
    search_fields = ["name"]
    ordering_fields = ["starts_at", "name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("server")

    def perform_destroy(self, window):
        services.do_delete_window(window, actor=self.request.user)


class CheckViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Your uptime checks with their uptime over 24 hours and 30 days."""

    queryset = Check.objects.all()
    serializer_class = CheckSerializer
    filterset_class = CheckFilter
    search_fields = ["name", "target"]
    ordering_fields = ["name", "status", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = page if page is not None else list(queryset)
        context = {**self.get_serializer_context(), "uptime": uptime(rows)}
        data = self.get_serializer_class()(rows, many=True, context=context).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def perform_destroy(self, check):
        services.do_delete_check(check, actor=self.request.user)
