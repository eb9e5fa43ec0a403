from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.viewsets import PolicyViewSetMixin
from core.policy import CHANGE
from hooks import services
from hooks.api.serializers import WebhookDeliverySerializer, WebhookSerializer
from hooks.filters import DeliveryFilter, WebhookFilter
from hooks.models import Delivery, Webhook


class WebhookViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Your webhooks. ``test`` sends a test event; deliveries are under
    ``/api/v1/webhook-deliveries/?webhook=<uuid>``."""

    queryset = Webhook.objects.all()
    serializer_class = WebhookSerializer
    filterset_class = WebhookFilter
    # Not the URL: a substring search would let resellers and staff, who are shown it without
    # its credentials, read them out a character at a time.
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("owner", "token")  # owner and token: ``stopped_because``

    def perform_destroy(self, hook):
        services.do_delete_webhook(hook, actor=self.request.user)

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def test(self, request, uuid=None):
        """Send a test event; its delivery (attempts, response code, error) is returned."""
        delivery = services.do_send_test(self.get_object(), actor=request.user)
        delivery = Delivery.objects.select_related("webhook", "event").get(pk=delivery.pk)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryViewSet(PolicyViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Deliveries of your webhooks, newest first: the body sent, attempts, the receiver's
    response code and the last error. Filter with ``webhook``, ``state``, ``type``."""

    queryset = Delivery.objects.all()
    serializer_class = WebhookDeliverySerializer
    filterset_class = DeliveryFilter
    ordering_fields = ["created_at"]

    def optimise(self, qs):
        return qs.select_related("webhook", "event")
