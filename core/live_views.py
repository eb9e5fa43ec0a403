"""Live views of the operation pages and the dashboard (routed in panel/routing.py)."""

from __future__ import annotations

from django.template.loader import render_to_string

from core.filters import OperationFilter
from core.live import Fragment, LiveView, RowList
from core.models import Operation
from core.policy import restrict

BADGE = "core/partials/operation_badge.html"
STATUS = "core/partials/operation_status.html"


class OperationListLive(RowList):
    model = Operation
    row_template = "core/partials/operation_row.html"
    row_name = "op"
    insert_into = "op-rows"

    def row_id(self, key: str) -> str:
        return f"op-{key}-row"

    def queryset(self):
        return super().queryset().select_related("owner", "requested_by")

    def filtered(self, qs):
        return OperationFilter(self.page, queryset=qs).qs


class DashboardLive(OperationListLive):
    """The dashboard's recent operations: every new one goes on top."""

    row_template = "core/partials/operation_recent.html"
    insert_into = "recent-ops"

    def row_id(self, key: str) -> str:
        return f"op-{key}-recent"

    def filtered(self, qs):
        return qs


class OperationDetailLive(LiveView):
    """One operation: its status block and its log lines."""

    topics = ("core.operation",)
    log_stream = True

    def allowed(self) -> bool:
        return restrict(Operation, self.user).filter(uuid=self.key).exists()

    def fragments(self, keys):
        if self.key not in keys.get("core.operation", ()):
            return [], []
        op = restrict(Operation, self.user).filter(uuid=self.key).first()
        if op is None:
            return [], []
        return [
            Fragment(f"op-{self.key}-state", render_to_string(BADGE, {"op": op})),
            Fragment(
                f"op-{self.key}-status", render_to_string(STATUS, {"op": op, "user": self.user})
            ),
        ], []
