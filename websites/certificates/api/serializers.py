from rest_framework import serializers

from websites.certificates.models import Certificate

READ_FIELDS = [
    "uuid",
    "website",
    "domain",
    "domains",
    "source",
    "key_type",
    "challenge",
    "wildcard",
    "status",
    "last_error",
    "not_before",
    "not_after",
    "fingerprint",
    "installed",
    "updated_at",
]


class CertificateSerializer(serializers.ModelSerializer):
    """A site's certificate. The private key is never shown."""

    website = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    domain = serializers.CharField(source="website.domain", read_only=True)

    class Meta:
        model = Certificate
        fields = READ_FIELDS
        read_only_fields = READ_FIELDS


class RequestSerializer(serializers.Serializer):
    """POST /certificates/: ``website`` and ``key_type`` order from ACME; with
    ``certificate`` and ``private_key`` the upload is checked and installed instead."""

    website = serializers.UUIDField()
    key_type = serializers.ChoiceField(choices=Certificate.KeyType.choices, required=False)
    challenge = serializers.ChoiceField(choices=Certificate.Challenge.choices, required=False)
    wildcard = serializers.BooleanField(required=False)
    certificate = serializers.CharField(required=False, max_length=64 * 1024, trim_whitespace=False)
    private_key = serializers.CharField(
        required=False, max_length=16 * 1024, write_only=True, trim_whitespace=False
    )

    def validate(self, attrs):
        if ("certificate" in attrs) != ("private_key" in attrs):
            raise serializers.ValidationError("An upload needs both certificate and private_key.")
        for field in ("key_type", "challenge", "wildcard"):
            if "certificate" in attrs and field in attrs:
                raise serializers.ValidationError(f"{field} is for ACME orders, not uploads.")
        return attrs


class RenewSerializer(serializers.Serializer):
    key_type = serializers.ChoiceField(choices=Certificate.KeyType.choices, required=False)
    challenge = serializers.ChoiceField(choices=Certificate.Challenge.choices, required=False)
    wildcard = serializers.BooleanField(required=False)
