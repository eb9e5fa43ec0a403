from rest_framework import serializers

from accounts.models import User
from core.api.serializers import ServiceSerializer
from core.policy import CHANGE, is_staff, restrict
from servers import services
from servers.models import DriftItem, FirewallRule, Server

SERVER_READ_ONLY = [
    "uuid",
    "public_key",
    "host_key_fingerprint",
    "pending_host_key_fingerprint",
    "facts",
    "facts_at",
    "components",
    "bans",
    "last_seen_at",
    "last_error",
    "applied_at",
    "drift_checked_at",
    "created_at",
]
CONNECTION_FAILED = "The last connection failed; staff can see the details."


class DriftItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = DriftItem
        fields = ["path", "kind", "expected_sha256", "actual_sha256", "diff", "detected_at"]
        read_only_fields = fields


class ServerSerializer(ServiceSerializer):
    owner = serializers.SlugRelatedField(
        slug_field="uuid", queryset=User.objects.none(), required=False
    )
    private_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, style={"base_template": "textarea.html"}
    )
    password = serializers.CharField(write_only=True, required=False, allow_blank=True)
    host_key_fingerprint = serializers.SerializerMethodField()
    pending_host_key_fingerprint = serializers.SerializerMethodField()
    last_error = serializers.SerializerMethodField()
    create_service = staticmethod(services.do_create_server)
    update_service = staticmethod(services.do_update_server)

    class Meta:
        model = Server
        fields = [*services.SERVER_FIELDS, *services.SERVER_SECRETS, *SERVER_READ_ONLY]
        read_only_fields = SERVER_READ_ONLY

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            # Owners the caller may choose: users it may see who may own servers.
            self.fields["owner"].queryset = restrict(User, request.user).filter(
                role__in=Server.policy.add
            )

    def get_host_key_fingerprint(self, obj) -> str:
        return obj.host_key_fingerprint()

    def get_pending_host_key_fingerprint(self, obj) -> str:
        return obj.host_key_fingerprint(obj.pending_host_key)

    def get_last_error(self, obj) -> str:
        # Connection errors can tell what listens on a port: full text for staff only.
        request = self.context.get("request")
        if not obj.last_error or (request is not None and is_staff(request.user)):
            return obj.last_error
        return CONNECTION_FAILED


class ServerDetailSerializer(ServerSerializer):
    drift = DriftItemSerializer(many=True, read_only=True)

    class Meta(ServerSerializer.Meta):
        fields = [*ServerSerializer.Meta.fields, "drift"]


class PrepareSerializer(serializers.Serializer):
    php_versions = serializers.ListField(
        child=serializers.CharField(max_length=8), max_length=8, required=False
    )


class UnbanSerializer(serializers.Serializer):
    jail = serializers.CharField(max_length=64)
    address = serializers.CharField(max_length=64)


class FirewallRuleSerializer(ServiceSerializer):
    server = serializers.SlugRelatedField(slug_field="uuid", queryset=Server.objects.none())

    class Meta:
        model = FirewallRule
        fields = ["uuid", "server", *services.RULE_FIELDS]
        read_only_fields = ["uuid"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["server"].queryset = restrict(Server, request.user, CHANGE)
        if self.instance is not None:
            self.fields["server"].read_only = True  # a rule never moves between servers

    def create(self, validated):
        server = validated.pop("server")
        return services.do_save_rule(server, actor=self.actor, data=validated)

    def update(self, rule, validated):
        return services.do_save_rule(rule.server, actor=self.actor, data=validated, rule=rule)
