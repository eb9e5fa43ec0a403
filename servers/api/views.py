from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.serializers import OperationSerializer
from core.api.viewsets import PolicyViewSetMixin
from core.policy import ACCEPT_HOST_KEY, APPLY
from servers import services
from servers.api.serializers import (
    FirewallRuleSerializer,
    PrepareSerializer,
    ServerDetailSerializer,
    ServerSerializer,
    UnbanSerializer,
)
from servers.filters import FirewallRuleFilter, ServerFilter
from servers.models import FirewallRule, Server


class ServerViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Servers you manage. Actions start Operations and answer with them (202)."""

    queryset = Server.objects.all()
    serializer_class = ServerSerializer
    filterset_class = ServerFilter
    search_fields = ["name", "address", "location"]
    ordering_fields = ["name", "last_seen_at", "status"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        qs = qs.select_related("owner")
        return qs.prefetch_related("drift") if self.action == "retrieve" else qs

    def get_serializer_class(self):
        return ServerDetailSerializer if self.action == "retrieve" else ServerSerializer

    def perform_destroy(self, server):
        services.do_delete_server(server, actor=self.request.user)

    def _operation(self, starter):
        op = starter(self.get_object(), actor=self.request.user)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="test-connection", policy_action=APPLY)
    def test_connection(self, request, uuid=None):
        return self._operation(services.start_test_connection)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="gather-facts", policy_action=APPLY)
    def gather_facts(self, request, uuid=None):
        return self._operation(services.start_gather_facts)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def apply(self, request, uuid=None):
        return self._operation(services.start_apply)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="check-drift", policy_action=APPLY)
    def check_drift(self, request, uuid=None):
        return self._operation(services.start_drift_check)

    @extend_schema(request=PrepareSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def prepare(self, request, uuid=None):
        """Install nginx and the PHP versions asked for (servers/prepare.py)."""
        self.get_object()  # out of reach: 404 before the body is looked at
        body = PrepareSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = {"php_versions": body.validated_data.get("php_versions", [])}
        return self._operation(
            lambda s, actor: services.do_prepare_server(s, actor=actor, data=data)
        )

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="read-bans", policy_action=APPLY)
    def read_bans(self, request, uuid=None):
        """Read fail2ban's current bans into the server's ``bans``."""
        return self._operation(services.start_refresh_bans)

    @extend_schema(request=UnbanSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def unban(self, request, uuid=None):
        """Lift one fail2ban ban."""
        self.get_object()  # out of reach: 404 before the body is looked at
        body = UnbanSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        return self._operation(lambda s, actor: services.do_unban(s, actor=actor, data=data))

    @extend_schema(request=None, responses=ServerSerializer)
    @action(
        detail=True, methods=["post"], url_path="accept-host-key", policy_action=ACCEPT_HOST_KEY
    )
    def accept_host_key(self, request, uuid=None):
        server = services.do_accept_host_key(self.get_object(), actor=request.user)
        return Response(ServerSerializer(server, context=self.get_serializer_context()).data)


class FirewallRuleViewSet(
    PolicyViewSetMixin,
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
    filterset_class = FirewallRuleFilter
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("server")

    def perform_destroy(self, rule):
        services.do_delete_rule(rule, actor=self.request.user)
