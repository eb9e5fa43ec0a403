import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from accounts.api.serializers import as_drf_error
from accounts.models import Role
from core.api.serializers import OperationSerializer
from core.api.viewsets import VisibleModelMixin
from servers import services
from servers.api.serializers import (
    FirewallRuleSerializer,
    ServerDetailSerializer,
    ServerSerializer,
)
from servers.models import FirewallRule, Server


class ServerFilter(django_filters.FilterSet):
    class Meta:
        model = Server
        fields = ["status", "kind", "transport"]


class ServerViewSet(VisibleModelMixin, viewsets.ModelViewSet):
    """Servers you manage. Actions start Operations and answer with them (202)."""

    queryset = Server.objects.all()
    serializer_class = ServerSerializer
    filterset_class = ServerFilter
    search_fields = ["name", "address", "location"]
    ordering_fields = ["name", "last_seen_at", "status"]

    def optimise(self, qs):
        return qs.select_related("owner")

    def get_serializer_class(self):
        return ServerDetailSerializer if self.action == "retrieve" else ServerSerializer

    def get_object(self):
        obj = super().get_object()
        if self.action == "retrieve":
            obj = Server.objects.prefetch_related("drift").select_related("owner").get(pk=obj.pk)
        return obj

    def create(self, request, *args, **kwargs):
        if request.user.role not in (Role.ADMIN, Role.RESELLER):
            raise PermissionDenied("Only administrators and resellers add servers.")
        return super().create(request, *args, **kwargs)

    def perform_destroy(self, server):
        try:
            services.do_delete_server(server, actor=self.request.user)
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc

    def _operation(self, starter):
        op = starter(self.get_object(), actor=self.request.user)
        return Response(OperationSerializer(op).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="test-connection")
    def test_connection(self, request, uuid=None):
        return self._operation(services.start_test_connection)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="gather-facts")
    def gather_facts(self, request, uuid=None):
        return self._operation(services.start_gather_facts)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def apply(self, request, uuid=None):
        return self._operation(services.start_apply)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="check-drift")
    def check_drift(self, request, uuid=None):
        return self._operation(services.start_drift_check)

    @extend_schema(request=None, responses=ServerSerializer)
    @action(detail=True, methods=["post"], url_path="accept-host-key")
    def accept_host_key(self, request, uuid=None):
        if request.user.role != Role.ADMIN:
            raise NotFound()
        try:
            server = services.do_accept_host_key(self.get_object(), actor=request.user)
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc
        return Response(ServerSerializer(server, context={"request": request}).data)


class FirewallRuleViewSet(
    VisibleModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Firewall rules; every change is applied to its server as an Operation."""

    queryset = FirewallRule.objects.all()
    serializer_class = FirewallRuleSerializer
    filterset_fields = {"server__uuid": ["exact"], "action": ["exact"]}

    def optimise(self, qs):
        return qs.select_related("server")

    def perform_destroy(self, rule):
        try:
            services.do_delete_rule(rule, actor=self.request.user)
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc
