from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from core.api.serializers import ServiceSerializer
from servers.models import Server
from websites import plans, services
from websites.appsites import masked_env
from websites.models import Plan, SystemAccount, Website
from websites.options import without_hashes

WEBSITE_READ_ONLY = [
    "uuid",
    "status",
    "status_message",
    "suspended",
    "suspension_reason",
    "app_port",
    "app_running",
    "app_state",
    "app_state_at",
    "created_at",
]


class WebsiteSerializer(ServiceSerializer):
    """A site and its typed options. Raw directives are shown to everyone who may see the
    site; the service refuses them from anyone but an administrator (400, not ignored)."""

    server = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=Server.objects.all(),
        help_text="The server (one you may host on; set at creation).",
    )
    owner = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=get_user_model().objects.all(),
        required=False,
        help_text="Whom the site is for (administrators, resellers); default: you.",
    )
    domain = serializers.CharField(max_length=253, help_text="Set at creation.")
    kind = serializers.ChoiceField(
        choices=Website.Kind.choices, required=False, help_text="Set at creation."
    )
    options = serializers.JSONField(
        required=False,
        help_text="Typed vhost options; see docs/websites.md. Stored with defaults left out. "
        'auth_paths: [{"path": "/admin", "users": [{"name": "bob", "password": "..."}]}]; '
        "passwords are kept as bcrypt hashes and read back left out; a user sent without "
        "a password keeps the one it has.",
    )
    start_command = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        help_text="App sites: the command that starts the app in its directory (no shell).",
    )
    app_env = serializers.JSONField(
        required=False,
        help_text="App sites: environment variables {NAME: value}. Values are secrets: they "
        "read back as ********; on PATCH a name with null is removed, one with ******** "
        "keeps its value, others are set.",
    )
    create_service = staticmethod(services.do_create_website)
    update_service = staticmethod(services.do_update_website)

    class Meta:
        model = Website
        fields = [
            *WEBSITE_READ_ONLY,
            "domain",
            "aliases",
            "server",
            "owner",
            "kind",
            *services.WEBSITE_FIELDS,
        ]
        read_only_fields = WEBSITE_READ_ONLY
        # Uniqueness is the service's to check (with a clear message), not DRF's.
        validators = []

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["app_env"] = masked_env(instance)  # never the values
        data["options"] = without_hashes(data["options"])  # basic-auth users by name
        return data

    def get_fields(self):
        fields = super().get_fields()
        for name in ("domain", "aliases"):  # IDNs arrive in Unicode: the service converts
            fields[name].validators = []
        return fields

    def update(self, instance, validated_data):
        fixed = {"domain", "server", "owner", "kind"}
        changed = {
            k for k in fixed & set(validated_data) if validated_data[k] != getattr(instance, k)
        }
        if changed:
            raise DjangoValidationError(
                {k: "This cannot be changed after creation." for k in sorted(changed)}
            )
        data = {k: v for k, v in validated_data.items() if k not in fixed}
        return services.do_update_website(instance, actor=self.actor, data=data)


class SuspendSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True)


class SftpPasswordSerializer(serializers.Serializer):
    password = serializers.CharField(max_length=128, write_only=True)


class SystemAccountSerializer(serializers.ModelSerializer):
    server = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    user = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    ssh_key = serializers.CharField(
        required=False, allow_blank=True, help_text="One OpenSSH public key line; empty removes."
    )

    class Meta:
        model = SystemAccount
        fields = [
            "uuid",
            "server",
            "user",
            "name",
            "status",
            "status_message",
            "ssh_key",
            "password_set_at",
            "disk_used_mb",
            "disk_measured_at",
            "created_at",
        ]
        read_only_fields = [f for f in fields if f != "ssh_key"]

    def update(self, instance, validated_data):
        return services.do_set_ssh_key(
            instance, actor=self.context["request"].user, key=validated_data.get("ssh_key", "")
        )


class PlanSerializer(ServiceSerializer):
    """A hosting plan. Empty limits are unlimited; empty PHP versions / kinds allow all."""

    owner = serializers.SlugRelatedField(
        slug_field="uuid",
        read_only=True,
        allow_null=True,
        help_text="The reseller selling this plan; null for the provider's own plans.",
    )
    create_service = staticmethod(plans.do_create_plan)
    update_service = staticmethod(plans.do_update_plan)

    class Meta:
        model = Plan
        fields = ["uuid", "owner", *plans.PLAN_FIELDS, "created_at"]
        read_only_fields = ["uuid", "owner", "created_at"]
