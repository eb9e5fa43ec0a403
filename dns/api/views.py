from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from core.api.serializers import OperationSerializer
from core.api.viewsets import PolicyViewSetMixin
from core.pagination import KeysetPagination
from core.policy import APPLY, CHANGE, VIEW, restrict
from dns import services
from dns.api.serializers import (
    AxfrSerializer,
    BulkDeleteResult,
    BulkDeleteSerializer,
    DnssecSerializer,
    RecordSerializer,
    ZoneSerializer,
)
from dns.filters import RecordFilter, ZoneFilter
from dns.models import Record, Zone
from dns.zonefiles import do_import_axfr, tsig_of


class ZoneViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """DNS zones you may see. Every change is published to the zone's nameservers."""

    queryset = Zone.objects.all()
    serializer_class = ZoneSerializer
    filterset_class = ZoneFilter
    search_fields = ["name"]
    ordering_fields = ["name", "status", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("owner", "group")

    def perform_destroy(self, zone):
        services.do_delete_zone(zone, actor=self.request.user)

    @extend_schema(request=AxfrSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="import-axfr", policy_action=CHANGE)
    def import_axfr(self, request, uuid=None):
        """Transfer the zone in from a server that serves it (AXFR, optionally TSIG-signed)
        and import its records, as an Operation."""
        zone = self.get_object()
        body = AxfrSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            op = do_import_axfr(
                zone,
                data["host"],
                data["port"],
                actor=request.user,
                replace=data["replace"],
                tsig=tsig_of(data),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        body = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: OperationSerializer(many=True)})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def publish(self, request, uuid=None):
        """Publish the whole zone again (each nameserver gets what differs)."""
        ops = services.publish_zone(self.get_object(), actor=request.user)
        data = OperationSerializer(ops, many=True, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=DnssecSerializer, responses={202: OperationSerializer(many=True)})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def dnssec(self, request, uuid=None):
        """Sign the zone or unsign it: one Operation per nameserver; the DS records appear
        on the zone once they finish."""
        zone = self.get_object()
        form = DnssecSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        ops = services.do_set_dnssec(zone, actor=request.user, data=dict(form.validated_data))
        data = OperationSerializer(ops, many=True, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class RecordViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Records of the zones you may see: filter with ``?zone=<uuid>``, ``?type=``, ``?name=``,
    ``?q=`` (name prefix or content). Pages by cursor, so a 50,000-record zone pages as fast
    at the end as at the start."""

    queryset = Record.objects.all()
    serializer_class = RecordSerializer
    filterset_class = RecordFilter
    pagination_class = KeysetPagination
    ordering_fields: list[str] = []
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("zone")

    def perform_create(self, serializer):
        # The zone's own rule decides: whoever may change a zone may add its records.
        serializer.save()

    def perform_destroy(self, record):
        services.do_delete_record(record, actor=self.request.user)


class ZoneRecordViewSet(RecordViewSet):
    """The records of one zone (``/zones/{uuid}/records/``): the same filters and cursor
    pages as ``/records/``; a record created here belongs to this zone. ``bulk-delete``
    removes many in one change (one new serial, one publish)."""

    def zone(self, action: str = VIEW) -> Zone:
        visible = restrict(Zone, self.request.user, VIEW).filter(uuid=self.kwargs["zone_uuid"])
        zone = visible.first()
        if zone is None:
            raise NotFound()
        if action != VIEW and not restrict(Zone, self.request.user, action).filter(pk=zone.pk):
            raise PermissionDenied("You may not change this zone.")
        return zone

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # The zone first: out of reach is 404 before any body is read or validated.
        safe = request.method in permissions.SAFE_METHODS
        self.the_zone = self.zone(VIEW if safe else CHANGE)

    def get_queryset(self):
        # The zone decides (checked in initial() for this method's action), so a colleague
        # the zone is shared with reaches its records too.
        return self.optimise(Record.objects.filter(zone__uuid=self.kwargs["zone_uuid"]))

    def get_serializer(self, *args, **kwargs):
        serializer = super().get_serializer(*args, **kwargs)
        if "zone" in getattr(serializer, "fields", {}):
            serializer.fields["zone"].read_only = True  # the zone is the one in the path
        return serializer

    def perform_create(self, serializer):
        serializer.save(zone=self.the_zone)

    @extend_schema(request=BulkDeleteSerializer, responses={200: BulkDeleteResult})
    @action(detail=False, methods=["post"], url_path="bulk-delete")
    def bulk_delete(self, request, zone_uuid=None):
        zone = self.the_zone
        body = BulkDeleteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        found = list(Record.objects.filter(zone=zone, uuid__in=body.validated_data["records"]))
        deleted = services.do_delete_records(zone, found, actor=request.user)
        return Response({"deleted": deleted})
