from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from core.api.parsers import StrictJSONParser
from core.api.serializers import OperationSerializer
from core.api.viewsets import PolicyViewSetMixin
from core.policy import APPLY, VIEW
from vps import services, stats
from vps.api import serializers as s
from vps.filters import HypervisorFilter, IpPoolFilter, VpsFilter
from vps.models import RENEW, Hypervisor, Image, IpPool, Snapshot, SshKey, Vps, VpsPlan

METHODS = ["get", "post", "patch", "delete", "head", "options"]


def _operation(view, op, code=status.HTTP_202_ACCEPTED) -> Response:
    return Response(
        OperationSerializer(op, context=view.get_serializer_context()).data, status=code
    )


class HypervisorViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Hypervisors (administrators). Capacity and domains come from the last inventory."""

    queryset = Hypervisor.objects.all()
    serializer_class = s.HypervisorSerializer
    filterset_class = HypervisorFilter
    http_method_names = METHODS
    ordering_fields = ["created_at"]

    def optimise(self, qs):
        return qs.select_related("server")

    def perform_destroy(self, hv):
        services.do_delete_hypervisor(hv, actor=self.request.user)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def refresh(self, request, uuid=None):
        """Read capacity and domains now (an Operation)."""
        return _operation(self, services.start_refresh(self.get_object(), actor=request.user))


class VpsPlanViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    queryset = VpsPlan.objects.all()
    serializer_class = s.VpsPlanSerializer
    http_method_names = METHODS
    ordering_fields = ["price", "name"]

    def optimise(self, qs):
        return qs.select_related("owner", "allowance_for")

    def perform_destroy(self, plan):
        services.do_delete_plan(plan, actor=self.request.user)


class ImageViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    queryset = Image.objects.all()
    serializer_class = s.ImageSerializer
    parser_classes = [StrictJSONParser, MultiPartParser]
    http_method_names = METHODS
    ordering_fields = ["name", "created_at"]

    def perform_destroy(self, image):
        services.do_delete_image(image, actor=self.request.user)

    @extend_schema(request=None, responses={202: OperationSerializer(many=True)})
    # No paginator: the answer is a plain list (and the schema gets no second
    # "PaginatedOperationList" beside the operations API's keyset one).
    @action(detail=True, methods=["post"], policy_action=APPLY, pagination_class=None)
    def copy(self, request, uuid=None):
        """Copy the image into every enabled hypervisor's pool (an Operation each)."""
        ops = services.do_copy_image(self.get_object(), actor=request.user)
        data = OperationSerializer(ops, many=True, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class SshKeyViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    queryset = SshKey.objects.all()
    serializer_class = s.SshKeySerializer
    http_method_names = METHODS
    ordering_fields = ["name", "created_at"]

    def perform_destroy(self, key):
        services.do_delete_ssh_key(key, actor=self.request.user)


class IpPoolViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    queryset = IpPool.objects.all()
    serializer_class = s.IpPoolSerializer
    filterset_class = IpPoolFilter
    http_method_names = METHODS
    ordering_fields = ["name", "created_at"]

    def optimise(self, qs):
        return qs.select_related("hypervisor")

    def perform_destroy(self, pool):
        services.do_delete_pool(pool, actor=self.request.user)


class VpsViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """VPSes you may see (from the database; libvirt is never asked in a request).
    Creating, power actions and deleting start Operations."""

    queryset = Vps.objects.exclude(state=Vps.State.DELETED)
    serializer_class = s.VpsSerializer
    filterset_class = VpsFilter
    search_fields = ["hostname"]
    ordering_fields = ["hostname", "created_at", "state"]
    http_method_names = METHODS

    def optimise(self, qs):
        return qs.select_related("owner", "plan", "image", "hypervisor__server").prefetch_related(
            "ssh_keys", "addresses"
        )

    @extend_schema(responses={202: OperationSerializer})
    def destroy(self, request, *args, **kwargs):
        return _operation(self, services.do_delete_vps(self.get_object(), actor=request.user))

    @extend_schema(request=s.PowerSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def power(self, request, uuid=None):
        """start, shutdown (ACPI, forced after a timeout), reboot, force_off, suspend, resume."""
        vps = self.get_object()  # out of reach is 404 before the body is even read
        body = s.PowerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        op = services.do_power(vps, actor=request.user, action=body.validated_data["action"])
        return _operation(self, op)

    @extend_schema(request=s.ReinstallSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def reinstall(self, request, uuid=None):
        """Replace the disk with a fresh copy of an image (snapshots deleted first)."""
        vps = self.get_object()
        body = s.ReinstallSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return _operation(
            self, services.do_reinstall_vps(vps, actor=request.user, data=body.validated_data)
        )

    @extend_schema(request=s.ResizeSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def resize(self, request, uuid=None):
        """Move to another plan (offline; the disk only grows)."""
        vps = self.get_object()
        body = s.ResizeSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        return _operation(
            self, services.do_resize_vps(vps, actor=request.user, data=body.validated_data)
        )

    @extend_schema(request=s.VpsRenewSerializer, responses={200: s.VpsSerializer})
    @action(detail=True, methods=["post"], policy_action=RENEW)
    def renew(self, request, uuid=None):
        """Administrators: a new expiry (``null``: none). A VPS suspended because it expired
        becomes stopped, so its owner can start it again."""
        vps = self.get_object()  # out of reach (everyone but administrators) is 404
        body = s.VpsRenewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        vps = services.do_renew_vps(vps, actor=request.user, data=body.validated_data)
        return Response(s.VpsSerializer(vps, context=self.get_serializer_context()).data)

    @extend_schema(
        parameters=[OpenApiParameter("range", str, enum=list(stats.RANGES))],
        responses=s.VpsSeriesSerializer,
    )
    @action(
        detail=True, methods=["get"], policy_action=VIEW, pagination_class=None, filter_backends=[]
    )
    def metrics(self, request, uuid=None):
        """The VPS's CPU %, memory and disk/network bytes/s: ``1h`` from the raw samples (a
        point a minute), ``24h`` from the 5-minute rollups."""
        vps = self.get_object()
        query = s.MetricsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = stats.series(vps, query.validated_data["range"])
        return Response(s.VpsSeriesSerializer({"vps": vps.uuid, **found}).data)


class SnapshotViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Snapshots (internal qcow2) of the VPSes you may see, within the plan's limit."""

    queryset = Snapshot.objects.all()
    serializer_class = s.SnapshotSerializer
    http_method_names = METHODS

    def optimise(self, qs):
        return qs.select_related("vps")

    def perform_create(self, serializer):
        serializer.save()  # the VPS's own rule decides (APPLY on it)

    @extend_schema(responses={202: OperationSerializer})
    def destroy(self, request, *args, **kwargs):
        return _operation(self, services.do_delete_snapshot(self.get_object(), actor=request.user))

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def revert(self, request, uuid=None):
        return _operation(self, services.do_revert_snapshot(self.get_object(), actor=request.user))
