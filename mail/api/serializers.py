from rest_framework import serializers

from accounts.models import User
from core.api.serializers import ServiceSerializer
from core.policy import CHANGE, restrict
from mail import services
from mail.models import MailAlias, Mailbox, MailDomain, MailServerState
from servers.models import Server

STATE = ["uuid", "status", "status_message", "created_at"]


class _MailServerRef(serializers.SlugRelatedField):
    """Servers by uuid among those the caller's mail may live on (the service checks the
    owner's)."""

    def get_queryset(self):
        request = self.context.get("request")
        return services.mail_servers(request.user) if request else Server.objects.none()


class _OwnerRef(serializers.SlugRelatedField):
    def get_queryset(self):
        request = self.context.get("request")
        return services.owners_for(request.user) if request else User.objects.none()


class _DomainRef(serializers.SlugRelatedField):
    def get_queryset(self):
        request = self.context.get("request")
        if request is None:
            return MailDomain.objects.none()
        return restrict(MailDomain, request.user, CHANGE)


class MailDomainSerializer(ServiceSerializer):
    server = _MailServerRef(slug_field="uuid")
    owner = _OwnerRef(slug_field="uuid", required=False)
    domain = serializers.CharField(max_length=300)
    create_service = staticmethod(services.do_create_mail_domain)
    update_service = staticmethod(services.do_update_mail_domain)

    class Meta:
        model = MailDomain
        fields = [*STATE, "domain", "server", "owner", "suspended", "catch_all", "spam_allow",
                  "spam_deny", "dns_check", "dns_checked_at"]  # fmt: skip
        read_only_fields = [*STATE, "dns_check", "dns_checked_at"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            for name in ("domain", "server", "owner"):  # fixed once made
                fields[name].read_only = True
        return fields

    def create(self, validated_data):
        validated_data.pop("suspended", None)
        for name in ("catch_all", "spam_allow", "spam_deny"):
            validated_data.pop(name, None)
        return super().create(validated_data)


class MailboxSerializer(ServiceSerializer):
    domain = _DomainRef(slug_field="uuid")
    address = serializers.CharField(read_only=True)
    password = serializers.CharField(
        write_only=True,
        required=False,
        max_length=200,
        trim_whitespace=False,
        help_text="Required on create; only its SHA512-CRYPT hash is kept.",
    )
    create_service = staticmethod(services.do_create_mailbox)
    update_service = staticmethod(services.do_update_mailbox)

    class Meta:
        model = Mailbox
        fields = [*STATE, "domain", "local_part", "address", "password", "quota_mb",
                  "suspended", "billing_hold", "send_limit_per_hour", "autoreply",
                  "autoreply_subject",
                  "autoreply_body", "autoreply_start", "autoreply_end", "used_kb",
                  "used_at"]  # fmt: skip
        read_only_fields = [*STATE, "address", "billing_hold", "used_kb", "used_at"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            for name in ("domain", "local_part"):
                fields[name].read_only = True
            request = self.context.get("request")
            if request is not None and not services.may_set_send_limit(request.user, self.instance):
                fields["send_limit_per_hour"].read_only = True
        return fields

    def validate(self, attrs):
        # Read-only for customers, and refused (not silently dropped) when they change it.
        limit = self.initial_data.get("send_limit_per_hour") if self.instance else None
        changed = limit is not None and str(limit) != str(self.instance.send_limit_per_hour)
        if changed and not services.may_set_send_limit(self.context["request"].user, self.instance):
            raise serializers.ValidationError(
                {"send_limit_per_hour": "Only your provider or an administrator sets this."}
            )
        return super().validate(attrs)

    def create(self, validated_data):
        validated_data.pop("suspended", None)
        for name in (
            "send_limit_per_hour",
            "autoreply",
            "autoreply_subject",
            "autoreply_body",
            "autoreply_start",
            "autoreply_end",
        ):
            validated_data.pop(name, None)  # changed by PATCH
        return super().create(validated_data)


class MailAliasSerializer(ServiceSerializer):
    domain = _DomainRef(slug_field="uuid")
    address = serializers.CharField(read_only=True)
    destinations = serializers.ListField(
        child=serializers.CharField(max_length=320), max_length=50, source="destination_list"
    )
    create_service = staticmethod(services.do_create_alias)
    update_service = staticmethod(services.do_update_alias)

    class Meta:
        model = MailAlias
        fields = ["uuid", "created_at", "domain", "local_part", "address", "destinations"]
        read_only_fields = ["uuid", "created_at", "address"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            for name in ("domain", "local_part"):
                fields[name].read_only = True
        return fields

    def create(self, validated_data):
        validated_data["destinations"] = validated_data.pop("destination_list", [])
        return super().create(validated_data)

    def update(self, instance, validated_data):
        if "destination_list" in validated_data:
            validated_data["destinations"] = validated_data.pop("destination_list")
        return super().update(instance, validated_data)


class MailQueueSerializer(serializers.ModelSerializer):
    class Meta:
        model = MailServerState
        fields = ["queue", "queue_total", "queue_read_at"]
        read_only_fields = fields


class QueueIdsSerializer(serializers.Serializer):
    queue_ids = serializers.ListField(
        child=serializers.CharField(max_length=20), min_length=1, max_length=200
    )
