from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core import health
from core.filters import OperationFilter
from core.generic import PortalDetailView, PortalListView, get_for_user
from core.live import LivePageMixin
from core.models import Operation
from core.operations import OperationError, cancel_operation, retry_operation, start_operation
from core.pagination import KeysetListMixin
from core.policy import CHANGE

AREAS = {
    "websites": ("Websites", "globe", "Websites, PHP pools and certificates will be listed here."),
    "dns": ("DNS", "network", "DNS zones and their records will be listed here."),
    "vps": ("VPS", "cpu", "Virtual servers on your hypervisors will be listed here."),
    "monitoring": ("Monitoring", "activity", "Live metrics and alerts will be shown here."),
}


def area(request, area: str):
    title, icon, empty = AREAS[area]
    return render(request, "pages/area.html", {"title": title, "icon": icon, "empty": empty})


class OperationList(LivePageMixin, KeysetListMixin, PortalListView):
    model = Operation
    filterset_class = OperationFilter
    template_name = "core/operation_list.html"
    partial_template_name = "core/partials/operation_table.html"

    def optimise(self, qs):
        return qs.select_related("owner", "requested_by")


class OperationDetail(LivePageMixin, PortalDetailView):
    model = Operation
    template_name = "core/operation_detail.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        lines = list(self.object.lines.all()[:2000])
        ctx["lines"] = lines
        ctx["last_line"] = lines[-1].pk if lines else 0
        ctx["target_url"] = self.object.target_url()
        ctx["may_change"] = (
            Operation.objects.for_user(self.request.user, CHANGE).filter(pk=self.object.pk).exists()
        )
        return ctx


@require_POST
def operation_cancel(request, uuid):
    op = get_for_user(Operation, request.user, CHANGE, uuid=uuid)
    try:
        cancel_operation(op, actor=request.user)
        messages.success(request, f"Cancellation of “{op}” requested.")
    except OperationError as exc:
        messages.error(request, str(exc))
    return redirect("operation", uuid=op.uuid)


@require_POST
def operation_retry(request, uuid):
    op = get_for_user(Operation, request.user, CHANGE, uuid=uuid)
    try:
        new = retry_operation(op, actor=request.user)
    except OperationError as exc:
        messages.error(request, str(exc))
        return redirect("operation", uuid=op.uuid)
    messages.success(request, f"“{op}” queued again.")
    return redirect("operation", uuid=new.uuid)


@require_POST
def start_self_check(request):
    if not request.user.is_staff:
        raise Http404
    op = start_operation(
        kind="panel.self_check",
        task="core.tasks.self_check",
        owner=request.user,
        requested_by=request.user,
        lock_key="panel",
    )
    messages.info(request, "Self-check queued.")
    return redirect("operation", uuid=op.uuid)


@login_not_required
@never_cache
@require_GET
def healthz(request):
    found = health.checks()
    healthy = all(c["ok"] for c in found.values())
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "checks": found},
        status=200 if healthy else 503,
    )
