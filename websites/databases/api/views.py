from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.serializers import OperationSerializer
from core.api.viewsets import PolicyViewSetMixin
from core.policy import CHANGE
from websites.databases import services
from websites.databases.api.serializers import (
    DatabaseGrantSerializer,
    DatabaseSerializer,
    DatabaseServerSerializer,
    DatabaseUserSerializer,
    PasswordSerializer,
)
from websites.databases.filters import (
    DatabaseFilter,
    DatabaseGrantFilter,
    DatabaseServerFilter,
    DatabaseUserFilter,
)
from websites.databases.models import CustomerDatabase, DatabaseGrant, DatabaseServer, DatabaseUser


class _OperationDestroy:
    """DELETE starts the Operation that removes the thing from the server: 202 with it."""

    delete_service = None

    @extend_schema(responses={202: OperationSerializer})
    def destroy(self, request, uuid=None):
        op = type(self).delete_service(self.get_object(), actor=request.user)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class _Base(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    http_method_names = ["get", "post", "delete", "head", "options"]


class DatabaseViewSet(_OperationDestroy, _Base):
    """Your databases. Create makes it on the server as an Operation (status pending, then
    active or failed with the reason); DELETE drops it (202 with the Operation)."""

    queryset = CustomerDatabase.objects.all()
    serializer_class = DatabaseSerializer
    filterset_class = DatabaseFilter
    search_fields = ["name"]
    ordering_fields = ["name", "size_bytes", "created_at"]
    delete_service = staticmethod(services.do_delete_database)

    def optimise(self, qs):
        return qs.select_related("db_server", "owner")


class DatabaseUserViewSet(_OperationDestroy, _Base):
    """Database users. The password is in the create and rotate-password responses only."""

    queryset = DatabaseUser.objects.all()
    serializer_class = DatabaseUserSerializer
    filterset_class = DatabaseUserFilter
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    delete_service = staticmethod(services.do_delete_user)

    def optimise(self, qs):
        return qs.select_related("db_server", "owner")

    @extend_schema(request=None, responses={202: PasswordSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-password", policy_action=CHANGE)
    def rotate_password(self, request, uuid=None):
        password, op = services.do_rotate_password(self.get_object(), actor=request.user)
        data = PasswordSerializer(
            {"password": password, "operation": op}, context=self.get_serializer_context()
        ).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class DatabaseGrantViewSet(_OperationDestroy, _Base):
    """Who may use which database. POST an existing pair to change its privileges."""

    queryset = DatabaseGrant.objects.all()
    serializer_class = DatabaseGrantSerializer
    filterset_class = DatabaseGrantFilter
    delete_service = staticmethod(services.do_revoke)

    def optimise(self, qs):
        return qs.select_related("database", "user")


class DatabaseServerViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Database servers (administrators; support reads)."""

    queryset = DatabaseServer.objects.all()
    serializer_class = DatabaseServerSerializer
    filterset_class = DatabaseServerFilter
    search_fields = ["name", "host"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("server")

    def perform_destroy(self, db_server):
        services.do_delete_database_server(db_server, actor=self.request.user)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="check", policy_action=CHANGE)
    def check(self, request, uuid=None):
        op = services.start_check_server(self.get_object(), actor=request.user)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)
