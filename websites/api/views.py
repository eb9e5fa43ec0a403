from rest_framework import mixins, permissions, viewsets

from core.api.viewsets import PolicyViewSetMixin
from websites import plans
from websites.api.serializers import PlanSerializer, WebsiteSerializer
from websites.models import Plan, Website
from websites.plans import visible_plans


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


class PlanViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Hosting plans. Administrators write the provider's plans, a reseller its own (within
    its own plan); everyone reads the plan they are subscribed to."""

    queryset = Plan.objects.all()
    serializer_class = PlanSerializer
    search_fields = ["name"]
    ordering_fields = ["name", "price", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if self.request.method in permissions.SAFE_METHODS:
            return visible_plans(self.request.user).select_related("owner")
        return super().get_queryset()

    def optimise(self, qs):
        return qs.select_related("owner")

    def perform_destroy(self, instance):
        plans.do_delete_plan(instance, actor=self.request.user)
