from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from accounts.api.serializers import as_drf_error
from accounts.models import Role, User
from servers import services
from servers.engine import validate_overrides
from servers.models import DriftItem, FirewallRule, Server


class DriftItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = DriftItem
        fields = ["path", "kind", "expected_sha256", "actual_sha256", "diff", "detected_at"]
        read_only_fields = fields


class ServerSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=User.objects.filter(role__in=[Role.ADMIN, Role.RESELLER]),
        required=False,
    )
    private_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, style={"base_template": "textarea.html"}
    )
    password = serializers.CharField(write_only=True, required=False, allow_blank=True)
    host_key_fingerprint = serializers.SerializerMethodField()
    pending_host_key_fingerprint = serializers.SerializerMethodField()

    class Meta:
        model = Server
        fields = [
            "uuid",
            "name",
            "address",
            "ssh_port",
            "ssh_user",
            "transport",
            "kind",
            "location",
            "status",
            "owner",
            "notes",
            "auth_method",
            "private_key",
            "password",
            "public_key",
            "host_key_fingerprint",
            "pending_host_key_fingerprint",
            "profile",
            "facts",
            "facts_at",
            "last_seen_at",
            "last_error",
            "applied_at",
            "drift_checked_at",
            "created_at",
        ]
        read_only_fields = [
            "uuid",
            "public_key",
            "facts",
            "facts_at",
            "last_seen_at",
            "last_error",
            "applied_at",
            "drift_checked_at",
            "created_at",
        ]

    def get_host_key_fingerprint(self, obj) -> str:
        return obj.host_key_fingerprint()

    def get_pending_host_key_fingerprint(self, obj) -> str:
        return obj.host_key_fingerprint(obj.pending_host_key)

    def validate_profile(self, value):
        try:
            validate_overrides(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        return value

    def validate(self, attrs):
        user = self.context["request"].user
        if user.role != Role.ADMIN:
            if attrs.get("owner") not in (None, user):
                raise serializers.ValidationError({"owner": "You can only own servers yourself."})
            attrs["owner"] = self.instance.owner if self.instance else user
        elif not self.instance and "owner" not in attrs:
            attrs["owner"] = user
        return attrs

    def create(self, validated):
        try:
            return services.do_create_server(actor=self.context["request"].user, data=validated)
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc

    def update(self, server, validated):
        try:
            return services.do_update_server(
                server, actor=self.context["request"].user, data=validated
            )
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc


class ServerDetailSerializer(ServerSerializer):
    drift = DriftItemSerializer(many=True, read_only=True)

    class Meta(ServerSerializer.Meta):
        fields = [*ServerSerializer.Meta.fields, "drift"]


class FirewallRuleSerializer(serializers.ModelSerializer):
    server = serializers.SlugRelatedField(slug_field="uuid", queryset=Server.objects.none())

    class Meta:
        model = FirewallRule
        fields = [
            "uuid",
            "server",
            "position",
            "action",
            "protocol",
            "port",
            "port_end",
            "source",
            "comment",
        ]
        read_only_fields = ["uuid"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            self.fields["server"].queryset = Server.objects.for_user(request.user, "change")

    def validate(self, attrs):
        if (
            self.instance is not None
            and "server" in attrs
            and attrs["server"] != self.instance.server
        ):
            raise serializers.ValidationError({"server": "A rule cannot move between servers."})
        return attrs

    def _save(self, validated, rule=None):
        server = validated.pop("server", None) or rule.server
        try:
            return services.do_save_rule(
                server, actor=self.context["request"].user, data=validated, rule=rule
            )
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc

    def create(self, validated):
        return self._save(validated)

    def update(self, rule, validated):
        return self._save(validated, rule)
