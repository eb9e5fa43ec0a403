from rest_framework import serializers

from core.models import Operation, OperationLogLine


class OperationSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="email", read_only=True)
    target_type = serializers.SlugRelatedField(slug_field="model", read_only=True)

    class Meta:
        model = Operation
        fields = [
            "uuid",
            "kind",
            "state",
            "progress",
            "message",
            "error",
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


class OperationLogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = OperationLogLine
        fields = ["id", "created_at", "level", "message"]
        read_only_fields = fields
