from django.core.exceptions import ValidationError as DjangoValidationError
from django_otp import user_has_device
from rest_framework import serializers

from accounts import services
from accounts.models import ApiToken, Role, User
from core.models import AuditEntry


def as_drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"detail": exc.messages})


class UserSerializer(serializers.ModelSerializer):
    reseller = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=User.objects.filter(role=Role.RESELLER),
        required=False,
        allow_null=True,
    )
    password = serializers.CharField(write_only=True, required=False, min_length=10)

    class Meta:
        model = User
        fields = [
            "uuid",
            "email",
            "name",
            "role",
            "reseller",
            "company",
            "timezone",
            "is_active",
            "date_joined",
            "password",
        ]
        read_only_fields = ["uuid", "date_joined"]

    def create(self, validated):
        request = self.context["request"]
        try:
            return services.do_create_user(actor=request.user, **validated)
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc

    def update(self, user, validated):
        request = self.context["request"]
        validated.pop("password", None)
        if request.user.role != Role.ADMIN:
            for field in ("role", "reseller"):
                if field in validated and validated[field] != getattr(user, field):
                    raise serializers.ValidationError(
                        {field: "Only administrators may change this."}
                    )
        if user == request.user and validated.get("is_active") is False:
            raise serializers.ValidationError({"is_active": "You cannot deactivate yourself."})
        try:
            return services.do_update_user(user, actor=request.user, data=validated)
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc


class MeSerializer(serializers.ModelSerializer):
    two_factor_enabled = serializers.SerializerMethodField()

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

    def update(self, user, validated):
        try:
            return services.do_update_profile(
                user, actor=self.context["request"].user, data=validated
            )
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc


class ApiTokenSerializer(serializers.ModelSerializer):
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
        try:
            token, raw = services.do_create_token(request.user, actor=request.user, **validated)
        except DjangoValidationError as exc:
            raise as_drf_error(exc) from exc
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
