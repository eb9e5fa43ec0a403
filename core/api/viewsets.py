"""Base for API viewsets: the queryset always comes from ``for_user`` (out of reach is 404)."""

from rest_framework import permissions, viewsets

from core.policy import CHANGE, VIEW


class VisibleModelMixin:
    lookup_field = "uuid"
    queryset_extra = None

    def get_queryset(self):
        model = self.queryset.model
        action = VIEW if self.request.method in permissions.SAFE_METHODS else CHANGE
        qs = model.objects.for_user(self.request.user, action)
        return self.optimise(qs)

    def optimise(self, qs):
        return qs


class VisibleReadOnlyViewSet(VisibleModelMixin, viewsets.ReadOnlyModelViewSet):
    pass
