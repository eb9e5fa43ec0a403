"""Bases for API viewsets: querysets come from the policy, so out of reach is 404.

The policy action follows the HTTP method (GET: view, PUT/PATCH: change, DELETE: delete);
an ``@action`` names its own with ``policy_action=...``. Creating checks the model-level
``add`` rule.
"""

from __future__ import annotations

from rest_framework import mixins, permissions, viewsets
from rest_framework.exceptions import PermissionDenied

from core.policy import ADD, CHANGE, DELETE, VIEW, may, restrict

METHOD_ACTIONS = {"PUT": CHANGE, "PATCH": CHANGE, "DELETE": DELETE}


class PolicyViewSetMixin:
    lookup_field = "uuid"
    policy_action: str | None = None  # set per route by @action(policy_action=...)

    def get_queryset(self):
        action = self.policy_action or (
            VIEW
            if self.request.method in permissions.SAFE_METHODS
            else METHOD_ACTIONS.get(self.request.method, CHANGE)
        )
        # The class's own queryset (e.g. VPSes less deleted ones), narrowed by the policy.
        return self.optimise(restrict(self.queryset, self.request.user, action))

    def optimise(self, qs):
        return qs

    def perform_create(self, serializer):
        if not may(self.request.user, ADD, self.queryset.model):
            raise PermissionDenied("You may not create these.")
        serializer.save()


# The name the first viewsets were written against.
VisibleModelMixin = PolicyViewSetMixin


class VisibleReadOnlyViewSet(PolicyViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class ServiceViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """List, read, create and update through a ``ServiceSerializer``."""
