from rest_framework import serializers

from core.models import Operation, OperationLogLine
from core.policy import is_staff


class ServiceSerializer(serializers.ModelSerializer):
    """A serializer whose saves go through the app's service functions.

    Subclasses name them: ``create_service = staticmethod(services.do_create_x)`` (called
    with ``actor=`` and ``data=``) and ``update_service`` (called with the instance, ``actor=``
    and ``data=``). Their ``ValidationError`` becomes a 400 in the exception handler.
    """

    create_service = None
    update_service = None

    @property
    def actor(self):
        return self.context["request"].user

    def create(self, validated_data):
        return type(self).create_service(actor=self.actor, data=validated_data)

    def update(self, instance, validated_data):
        return type(self).update_service(instance, actor=self.actor, data=validated_data)


class OperationSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="email", read_only=True, allow_null=True)
    target_type = serializers.SlugRelatedField(slug_field="model", read_only=True, allow_null=True)
    error_detail = serializers.SerializerMethodField(
        help_text="The full error text, for staff; empty for everyone else."
    )

    class Meta:
        model = Operation
        fields = [
            "uuid",
            "kind",
            "state",
            "progress",
            "message",
            "error",
            "error_detail",
            "target_type",
            "target_id",
            "target_label",
            "owner",
            "requested_by",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_error_detail(self, op) -> str:
        request = self.context.get("request")
        if request is not None and is_staff(request.user):
            return op.error_detail or op.error
        return ""


class OperationLogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = OperationLogLine
        fields = ["id", "created_at", "level", "message"]
        read_only_fields = fields
