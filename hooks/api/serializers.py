from rest_framework import serializers

from core.api.serializers import ServiceSerializer
from hooks import services
from hooks.models import SUBSCRIBABLE, Delivery, Webhook


class WebhookSerializer(ServiceSerializer):
    """A webhook. ``secret`` (the signing secret) is write-only and never returned; made
    with an API token, the webhook belongs to that token too (``token``)."""

    events = serializers.ListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE), allow_empty=False
    )
    secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=200, trim_whitespace=False
    )
    token = serializers.SlugRelatedField(
        slug_field="uuid",
        read_only=True,
        allow_null=True,
        help_text="The API token this webhook was made with (it stops with the token).",
    )
    active = serializers.BooleanField(
        read_only=True, help_text="Whether it sends now (false: see stopped_because)."
    )
    stopped_because = serializers.CharField(
        read_only=True,
        help_text="Why it sends nothing ('' when active): switched off, its owner deactivated "
        "or in a role that may not hold webhooks, its API token revoked or expired.",
    )
    update_service = staticmethod(services.do_update_webhook)

    class Meta:
        model = Webhook
        fields = [
            "uuid",
            *services.WEBHOOK_FIELDS,
            "secret",
            "token",
            "active",
            "stopped_because",
            "created_at",
        ]
        read_only_fields = ["uuid", "token", "active", "stopped_because", "created_at"]

    def to_representation(self, hook):
        data = super().to_representation(hook)
        request = self.context.get("request")
        # Whole for its owner; without user, password and query values for anyone else
        # (a PATCH sending that back keeps the stored URL).
        data["url"] = hook.url_for(getattr(request, "user", None))
        return data

    def create(self, validated_data):
        from accounts.models import ApiToken

        auth = self.context["request"].auth
        token = auth if isinstance(auth, ApiToken) else None
        return services.do_create_webhook(actor=self.actor, data=validated_data, token=token)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    webhook = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    event = serializers.SerializerMethodField(help_text="The JSON body sent.")

    class Meta:
        model = Delivery
        fields = [
            "uuid",
            "webhook",
            "event",
            "state",
            "attempts",
            "response_status",
            "last_error",
            "created_at",
            "next_attempt_at",
            "sent_at",
        ]
        read_only_fields = fields

    def get_event(self, delivery) -> dict:
        return delivery.event.body()
