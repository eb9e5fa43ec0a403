from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from core.api.viewsets import PolicyViewSetMixin
from monitoring.api.serializers import LatestSerializer, SeriesQuerySerializer, SeriesSerializer
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
        data = {"server": server.uuid, **found.__dict__}
        return Response(SeriesSerializer(data).data)
