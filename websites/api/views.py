from rest_framework import mixins, viewsets

from core.api.viewsets import PolicyViewSetMixin
from websites.api.serializers import WebsiteSerializer
from websites.models import Website


class WebsiteViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Websites you may see; PATCH changes typed options (administrators: raw directives
    too) and applies the site."""

    queryset = Website.objects.all()
    serializer_class = WebsiteSerializer
    search_fields = ["domain", "aliases"]
    ordering_fields = ["domain", "status", "created_at"]
    http_method_names = ["get", "patch", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("server", "owner")
