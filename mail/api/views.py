from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.serializers import OperationSerializer
from core.api.viewsets import PolicyViewSetMixin
from core.policy import APPLY, CHANGE
from mail import services
from mail.api.serializers import (
    MailAliasSerializer,
    MailboxSerializer,
    MailDomainSerializer,
    MailQueueSerializer,
    QueueIdsSerializer,
)
from mail.filters import MailAliasFilter, MailboxFilter, MailDomainFilter
from mail.models import MailAlias, Mailbox, MailDomain, MailServerState
from servers.models import Server


class _Base(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    delete_service = None

    def perform_destroy(self, instance):
        type(self).delete_service(instance, actor=self.request.user)


class MailDomainViewSet(_Base):
    """Domains that receive mail. Creating or changing one applies the server's mail
    configuration as an Operation (``status`` says how it went); PATCH ``suspended``."""

    queryset = MailDomain.objects.all()
    serializer_class = MailDomainSerializer
    filterset_class = MailDomainFilter
    ordering_fields = ["domain", "created_at"]
    delete_service = staticmethod(services.do_delete_mail_domain)

    def optimise(self, qs):
        return qs.select_related("server", "owner")

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="check-dns", policy_action=CHANGE)
    def check_dns(self, request, uuid=None):
        """Ask the DNS for the records the domain needs; the result is in ``dns_check``."""
        op = services.start_dns_check(self.get_object(), actor=request.user)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class MailboxViewSet(_Base):
    """Mailboxes. The password is write-only; only its SHA512-CRYPT hash is kept."""

    queryset = Mailbox.objects.all()
    serializer_class = MailboxSerializer
    filterset_class = MailboxFilter
    ordering_fields = ["local_part", "created_at"]
    delete_service = staticmethod(services.do_delete_mailbox)

    def optimise(self, qs):
        return qs.select_related("domain")


class MailAliasViewSet(_Base):
    """Aliases (to mailboxes here) and forwarders (to addresses elsewhere)."""

    queryset = MailAlias.objects.all()
    serializer_class = MailAliasSerializer
    filterset_class = MailAliasFilter
    ordering_fields = ["local_part", "created_at"]
    delete_service = staticmethod(services.do_delete_alias)

    def optimise(self, qs):
        return qs.select_related("domain")


class MailServerViewSet(PolicyViewSetMixin, viewsets.GenericViewSet):
    """Servers as mail servers: ``prepare`` installs and configures Postfix, Dovecot and
    OpenDKIM (an Operation, answered with 202)."""

    queryset = Server.objects.all()
    serializer_class = OperationSerializer
    http_method_names = ["get", "post", "head", "options"]

    def _operation(self, op):
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=APPLY)
    def prepare(self, request, uuid=None):
        return self._operation(
            services.do_prepare_mail(self.get_object(), actor=request.user, data={})
        )

    @extend_schema(request=None, responses={200: MailQueueSerializer})
    @action(detail=True, methods=["get"], policy_action=APPLY)
    def queue(self, request, uuid=None):
        """The queue as last read (``read-queue`` reads it again)."""
        state = MailServerState.objects.filter(server=self.get_object()).first()
        return Response(MailQueueSerializer(state or MailServerState()).data)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="read-queue", policy_action=APPLY)
    def read_queue(self, request, uuid=None):
        return self._operation(services.start_read_queue(self.get_object(), actor=request.user))

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="read-usage", policy_action=APPLY)
    def read_usage(self, request, uuid=None):
        return self._operation(services.start_read_usage(self.get_object(), actor=request.user))

    @extend_schema(request=QueueIdsSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="retry-queued", policy_action=APPLY)
    def retry_queued(self, request, uuid=None):
        server = self.get_object()
        body = QueueIdsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = {"queue_ids": body.validated_data["queue_ids"]}
        return self._operation(services.do_retry_queued(server, actor=request.user, data=data))

    @extend_schema(request=QueueIdsSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="delete-queued", policy_action=APPLY)
    def delete_queued(self, request, uuid=None):
        server = self.get_object()
        body = QueueIdsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = {"queue_ids": body.validated_data["queue_ids"]}
        return self._operation(services.do_delete_queued(server, actor=request.user, data=data))
