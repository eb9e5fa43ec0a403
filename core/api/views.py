from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.serializers import OperationLogLineSerializer, OperationSerializer
from core.api.viewsets import VisibleReadOnlyViewSet
from core.filters import OperationFilter
from core.models import Operation
from core.operations import OperationError, cancel_operation, retry_operation
from core.pagination import KeysetPagination


class OperationViewSet(VisibleReadOnlyViewSet):
    """Long-running work: provisioning, applies, backups. Cancel or retry by action."""

    queryset = Operation.objects.all()
    serializer_class = OperationSerializer
    filterset_class = OperationFilter
    pagination_class = KeysetPagination
    ordering_fields = ["created_at", "state", "kind"]
    search_fields = ["kind", "target_label"]

    def optimise(self, qs):
        return qs.select_related("owner", "requested_by", "target_type")

    @extend_schema(request=None, responses=OperationSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, uuid=None):
        try:
            op = cancel_operation(self.get_object(), actor=request.user)
        except OperationError as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from exc
        return Response(OperationSerializer(op).data)

    @extend_schema(request=None, responses=OperationSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, uuid=None):
        try:
            op = retry_operation(self.get_object(), actor=request.user)
        except OperationError as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from exc
        return Response(OperationSerializer(op).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=OperationLogLineSerializer(many=True))
    @action(detail=True, methods=["get"])
    def log(self, request, uuid=None):
        op = self.get_object()
        after = request.query_params.get("after", "0")
        if not after.isdigit():
            raise serializers.ValidationError({"after": "Must be a line id (a whole number)."})
        lines = op.lines.filter(id__gt=int(after))[:1000]
        return Response(OperationLogLineSerializer(lines, many=True).data)
