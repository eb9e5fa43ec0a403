import django_filters
from django.urls import path
from rest_framework import generics, mixins, status, viewsets
from rest_framework.response import Response

from accounts import services
from accounts.api.serializers import (
    ApiTokenSerializer,
    AuditEntrySerializer,
    MeSerializer,
    UserSerializer,
)
from accounts.models import ApiToken, User
from core.api.viewsets import VisibleModelMixin, VisibleReadOnlyViewSet
from core.models import AuditEntry
from core.pagination import KeysetPagination


class MeView(generics.RetrieveUpdateAPIView):
    """The authenticated user."""

    serializer_class = MeSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        return self.request.user


class UserFilter(django_filters.FilterSet):
    class Meta:
        model = User
        fields = ["role", "is_active"]


class UserViewSet(
    VisibleModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Administrators see everyone; resellers themselves and their customers."""

    queryset = User.objects.all()
    serializer_class = UserSerializer
    filterset_class = UserFilter
    search_fields = ["email", "name", "company"]
    ordering_fields = ["email", "date_joined"]

    def optimise(self, qs):
        return qs.select_related("reseller")


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens. DELETE revokes (the row stays for the record)."""

    queryset = ApiToken.objects.none()
    serializer_class = ApiTokenSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user)

    def destroy(self, request, *args, **kwargs):
        services.do_revoke_token(self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = AuditEntry
        fields = ["action", "object_type", "object_id"]


class AuditViewSet(VisibleReadOnlyViewSet):
    """The audit log, limited to what concerns objects you may see."""

    queryset = AuditEntry.objects.all()
    serializer_class = AuditEntrySerializer
    filterset_class = AuditFilter
    pagination_class = KeysetPagination
    lookup_field = "pk"


urlpatterns = [path("me/", MeView.as_view(), name="api-me")]
