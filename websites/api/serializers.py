from rest_framework import serializers

from core.api.serializers import ServiceSerializer
from websites import services
from websites.models import Website

WEBSITE_READ_ONLY = [
    "uuid",
    "domain",
    "aliases",
    "server",
    "owner",
    "status",
    "status_message",
    "created_at",
]


class WebsiteSerializer(ServiceSerializer):
    """A site and its typed options. Raw directives are shown to everyone who may see the
    site; the service refuses them from anyone but an administrator (400, not ignored)."""

    server = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    options = serializers.JSONField(
        required=False,
        help_text="Typed vhost options; see docs/websites.md. Stored with defaults left out.",
    )
    update_service = staticmethod(services.do_update_website)

    class Meta:
        model = Website
        fields = [*WEBSITE_READ_ONLY, *services.WEBSITE_FIELDS]
        read_only_fields = WEBSITE_READ_ONLY
