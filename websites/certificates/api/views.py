from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from core.api.serializers import OperationSerializer
from core.api.viewsets import PolicyViewSetMixin
from core.policy import CHANGE, restrict
from websites.certificates import services
from websites.certificates.api.serializers import (
    CertificateSerializer,
    RenewSerializer,
    RequestSerializer,
)
from websites.certificates.models import Certificate
from websites.models import Website


class CertificateViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Certificates of the sites you may see. POST orders one from ACME for a site you may
    change (or installs an uploaded one); ``renew`` orders again. Both answer 202 with the
    Operation."""

    queryset = Certificate.objects.all()
    serializer_class = CertificateSerializer
    search_fields = ["website__domain", "domains"]
    ordering_fields = ["not_after", "status", "website__domain"]
    filterset_fields = ["status", "source"]
    http_method_names = ["get", "post", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("website")

    def _accepted(self, op):
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=RequestSerializer, responses={202: OperationSerializer})
    def create(self, request):
        form = RequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        site = (
            restrict(Website, request.user, CHANGE)
            .select_related("server", "owner")
            .filter(uuid=data["website"])
            .first()
        )
        if site is None:
            raise NotFound("No such website.")
        if "certificate" in data:
            op = services.do_upload_certificate(
                site,
                actor=request.user,
                private_key=data["private_key"],
                certificate=data["certificate"],
            )
        else:
            op = services.request_certificate(
                site,
                actor=request.user,
                key_type=data.get("key_type", ""),
                challenge=data.get("challenge", ""),
                wildcard=data.get("wildcard"),
            )
        return self._accepted(op)

    @extend_schema(request=RenewSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def renew(self, request, uuid=None):
        cert = self.get_object()
        form = RenewSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        op = services.request_certificate(
            cert.website,
            actor=request.user,
            key_type=data.get("key_type", ""),
            challenge=data.get("challenge", ""),
            wildcard=data.get("wildcard"),
        )
        return self._accepted(op)
