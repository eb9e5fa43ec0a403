from rest_framework import serializers

from core.api.serializers import ServiceSerializer
from websites import plans, services
from websites.models import Plan, Website

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
