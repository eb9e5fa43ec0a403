from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.pagination import whole_number
from core.api.serializers import OperationLogLineSerializer, OperationSerializer
from core.api.viewsets import VisibleReadOnlyViewSet
from core.filters import OperationFilter
from core.models import Operation
from core.operations import OperationError, cancel_operation, retry_operation
from core.pagination import KeysetPagination
from core.policy import CANCEL, RETRY

LOG_PAGE = 1000


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

    def _answer(self, op, code=status.HTTP_200_OK):
        return Response(OperationSerializer(op, context=self.get_serializer_context()).data, code)

    @extend_schema(request=None, responses=OperationSerializer)
    @action(detail=True, methods=["post"], policy_action=CANCEL)
    def cancel(self, request, uuid=None):
        try:
            op = cancel_operation(self.get_object(), actor=request.user)
        except OperationError as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from exc
        return self._answer(op)

    @extend_schema(request=None, responses={201: OperationSerializer})
    @action(detail=True, methods=["post"], policy_action=RETRY)
    def retry(self, request, uuid=None):
        try:
            op = retry_operation(self.get_object(), actor=request.user)
        except OperationError as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from exc
        return self._answer(op, status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "after",
                OpenApiTypes.INT,
                description="Only lines with a larger id (for following a running log).",
            )
        ],
        responses=OperationLogLineSerializer(many=True),
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def log(self, request, uuid=None):
        """Up to 1,000 log lines after ``after``, oldest first (a plain array, not a page)."""
        op = self.get_object()
        after = whole_number(
            request.query_params.get("after", "0"), "after", minimum=0, maximum=2**63 - 1
        )
        lines = op.lines.filter(id__gt=after)[:LOG_PAGE]
        return Response(OperationLogLineSerializer(lines, many=True).data)
