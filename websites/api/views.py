from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from core.api.serializers import OperationSerializer
from core.api.viewsets import PolicyViewSetMixin
from core.policy import CHANGE
from websites import plans, services
from websites.api.serializers import (
    PlanSerializer,
    SftpPasswordSerializer,
    SuspendSerializer,
    SystemAccountSerializer,
    WebsiteSerializer,
)
from websites.filters import WebsiteFilter
from websites.models import Plan, SystemAccount, Website
from websites.plans import visible_plans


class WebsiteViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Websites you may see. POST creates one (pending; an Operation brings it to its
    server), PATCH changes typed options, PHP version or upstream (administrators: raw
    directives too), DELETE removes it from its server (202: the Operation), and the
    suspend/unsuspend actions are for the owner's provider."""

    queryset = Website.objects.all()
    serializer_class = WebsiteSerializer
    filterset_class = WebsiteFilter
    search_fields = ["domain", "aliases"]
    ordering_fields = ["domain", "status", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("server", "owner")

    def _operation(self, site):
        data = OperationSerializer(site.operation, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={202: OperationSerializer})
    def destroy(self, request, *args, **kwargs):
        site = services.do_delete_website(self.get_object(), actor=request.user)
        if not hasattr(site, "operation"):
            return Response(status=status.HTTP_204_NO_CONTENT)
        return self._operation(site)

    @extend_schema(request=SuspendSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def suspend(self, request, uuid=None):
        site = self.get_object()  # out of reach is 404 before anything else
        body = SuspendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        site = services.do_suspend_website(
            site, actor=request.user, reason=body.validated_data.get("reason", "")
        )
        if not hasattr(site, "operation"):
            raise ValidationError("The site is suspended already.")
        return self._operation(site)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def unsuspend(self, request, uuid=None):
        site = services.do_unsuspend_website(self.get_object(), actor=request.user)
        if not hasattr(site, "operation"):
            raise ValidationError("The site is not suspended.")
        return self._operation(site)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def retry(self, request, uuid=None):
        return self._operation(services.do_retry_website(self.get_object(), actor=request.user))

    def _app(self, request, action: str):
        site = self.get_object()  # out of reach is 404 before anything else
        op = services.do_app_action(site, actor=request.user, action=action)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def start(self, request, uuid=None):
        """App sites: start the app (and keep it started through later applies)."""
        return self._app(request, "start")

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def stop(self, request, uuid=None):
        """App sites: stop the app (it stays stopped until started)."""
        return self._app(request, "stop")

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def restart(self, request, uuid=None):
        """App sites: restart the app and wait until it answers."""
        return self._app(request, "restart")

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE, url_path="app-status")
    def app_status(self, request, uuid=None):
        """App sites: read the process state from the server's process manager."""
        return self._app(request, "status")


class SystemAccountViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Your system accounts on servers (SFTP). PATCH ``ssh_key`` sets the SFTP key; the
    ``password`` action sets an SFTP password (never stored by the panel)."""

    queryset = SystemAccount.objects.all()
    serializer_class = SystemAccountSerializer
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("server", "user")

    @extend_schema(request=SftpPasswordSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def password(self, request, uuid=None):
        account = self.get_object()  # out of reach is 404 before anything else
        body = SftpPasswordSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        op = services.do_set_sftp_password(
            account, actor=request.user, password=body.validated_data["password"]
        )
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class PlanViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Hosting plans. Administrators write the provider's plans, a reseller its own (within
    its own plan); everyone reads the plan they are subscribed to."""

    queryset = Plan.objects.all()
    serializer_class = PlanSerializer
    search_fields = ["name"]
    ordering_fields = ["name", "price", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if self.request.method in permissions.SAFE_METHODS:
            return visible_plans(self.request.user).select_related("owner")
        return super().get_queryset()

    def optimise(self, qs):
        return qs.select_related("owner")

    def perform_destroy(self, instance):
        plans.do_delete_plan(instance, actor=self.request.user)
