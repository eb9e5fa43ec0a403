from rest_framework import mixins, viewsets

from core.api.viewsets import PolicyViewSetMixin
from mail import services
from mail.api.serializers import MailAliasSerializer, MailboxSerializer, MailDomainSerializer
from mail.filters import MailAliasFilter, MailboxFilter, MailDomainFilter
from mail.models import MailAlias, Mailbox, MailDomain


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
