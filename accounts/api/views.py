from rest_framework import generics, mixins, status, viewsets
from rest_framework.response import Response

from accounts import services
from accounts.api.serializers import (
    ApiTokenSerializer,
    AuditEntrySerializer,
    MeSerializer,
    UserSerializer,
)
from accounts.filters import AuditFilter, UserFilter
from accounts.models import ApiToken, User
from core.api.viewsets import PolicyViewSetMixin, ServiceViewSet, VisibleReadOnlyViewSet
from core.models import AuditEntry
from core.pagination import KeysetPagination


class MeView(generics.RetrieveUpdateAPIView):
    """The authenticated user."""

    serializer_class = MeSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        return self.request.user


class UserViewSet(ServiceViewSet):
    """Administrators see everyone; resellers themselves and their customers."""

    queryset = User.objects.all()
    serializer_class = UserSerializer
    filterset_class = UserFilter
    search_fields = ["email", "name", "company"]
    ordering_fields = ["email", "date_joined"]

    def optimise(self, qs):
        return qs.select_related("reseller")


class ApiTokenViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens. DELETE revokes (the row stays for the record)."""

    queryset = ApiToken.objects.all()
    serializer_class = ApiTokenSerializer

    def optimise(self, qs):
        # Administrators revoke others' tokens in the admin; here everyone sees only theirs.
        return qs.filter(user=self.request.user)

    def destroy(self, request, *args, **kwargs):
        services.do_revoke_token(self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditViewSet(VisibleReadOnlyViewSet):
    """The audit log, limited to what concerns objects you may see."""

    queryset = AuditEntry.objects.all()
    serializer_class = AuditEntrySerializer
    filterset_class = AuditFilter
    pagination_class = KeysetPagination
    lookup_field = "pk"
