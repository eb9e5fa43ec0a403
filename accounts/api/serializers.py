from django_otp import user_has_device
from rest_framework import serializers

from accounts import services
from accounts.models import ApiToken, Role, User
from core.api.serializers import ServiceSerializer
from core.models import AuditEntry
from core.policy import restrict


class UserSerializer(ServiceSerializer):
    reseller = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=User.objects.none(),
        required=False,
        allow_null=True,
    )
    password = serializers.CharField(write_only=True, required=False, min_length=10)

    class Meta:
        model = User
        fields = ["uuid", *services.USER_CREATE_FIELDS, "date_joined", "password"]
        read_only_fields = ["uuid", "date_joined"]
        extra_kwargs = {"role": {"required": False}}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            # Resellers the caller may see: related choices come from the policy too.
            self.fields["reseller"].queryset = restrict(User, request.user).filter(
                role=Role.RESELLER
            )
        if self.instance is not None:
            # A new address is verified before use: change it on the email page.
            self.fields["email"].read_only = True

    def create(self, validated):
        password = validated.pop("password", None)
        return services.do_create_user(actor=self.actor, data=validated, password=password)

    def update(self, user, validated):
        validated.pop("password", None)
        return services.do_update_user(user, actor=self.actor, data=validated)


class MeSerializer(ServiceSerializer):
    two_factor_enabled = serializers.SerializerMethodField()
    update_service = staticmethod(services.do_update_profile)

    class Meta:
        model = User
        fields = [
            "uuid",
            "email",
            "name",
            "role",
            "company",
            "timezone",
            "session_timeout_minutes",
            "ip_allowlist",
            "two_factor_enabled",
        ]
        read_only_fields = ["uuid", "email", "role", "session_timeout_minutes", "ip_allowlist"]

    def get_two_factor_enabled(self, user) -> bool:
        return user_has_device(user, confirmed=True)


class ApiTokenSerializer(ServiceSerializer):
    token = serializers.SerializerMethodField(help_text="Shown once, on creation.")

    class Meta:
        model = ApiToken
        fields = [
            "uuid",
            "name",
            "scope",
            "prefix",
            "status",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "token",
        ]
        read_only_fields = [
            "uuid",
            "prefix",
            "status",
            "created_at",
            "last_used_at",
            "revoked_at",
            "token",
        ]

    def get_token(self, obj) -> str | None:
        return getattr(obj, "raw_token", None)

    def create(self, validated):
        request = self.context["request"]
        via = request.auth if isinstance(request.auth, ApiToken) else None
        token, raw = services.do_create_token(
            request.user, actor=request.user, data=validated, via=via
        )
        token.raw_token = raw
        return token


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "actor_label",
            "ip",
            "action",
            "object_type",
            "object_id",
            "object_label",
            "changes",
            "hash",
        ]
        read_only_fields = fields
