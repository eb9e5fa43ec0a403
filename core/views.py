from __future__ import annotations

from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core import events
from core.charts import daily_bars
from core.filters import OperationFilter
from core.generic import PortalDetailView, PortalListView, get_for_user
from core.live import LivePageMixin
from core.models import Operation, WorkerHeartbeat
from core.operations import OperationError, cancel_operation, retry_operation, start_operation
from core.policy import CHANGE

HEARTBEAT_STALE = timedelta(minutes=3)

AREAS = {
    "websites": ("Websites", "globe", "Websites, PHP pools and certificates will be listed here."),
    "dns": ("DNS", "network", "DNS zones and their records will be listed here."),
    "vps": ("VPS", "cpu", "Virtual servers on your hypervisors will be listed here."),
    "monitoring": ("Monitoring", "activity", "Live metrics and alerts will be shown here."),
}


def dashboard(request):
    live_since = events.current_seq()  # before the data: see core.live.LivePageMixin
    ops = Operation.objects.for_user(request.user)
    counts = dict(ops.values_list("state").annotate(n=Count("id")).order_by())
    recent = ops.select_related("owner")[:8]
    since = timezone.now() - timedelta(days=14)
    per_day = (
        ops.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values_list("day", "state")
        .annotate(n=Count("id"))
        .order_by()
    )
    bars, peak = daily_bars(per_day, today=timezone.localdate())
    return render(
        request,
        "pages/dashboard.html",
        {
            "counts": counts,
            "recent": recent,
            "total": sum(counts.values()),
            "bars": bars,
            "peak": peak,
            "live_since": live_since,
        },
    )


def area(request, area: str):
    title, icon, empty = AREAS[area]
    return render(request, "pages/area.html", {"title": title, "icon": icon, "empty": empty})


class OperationList(LivePageMixin, PortalListView):
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
    checks: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health check
        checks["database"] = {"ok": False, "error": str(exc)}
    try:
        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)("healthz.")
        async_to_sync(layer.send)(channel, {"type": "healthz"})
        ok = async_to_sync(layer.receive)(channel).get("type") == "healthz"
        checks["channel_layer"] = {"ok": ok}
    except Exception as exc:  # noqa: BLE001
        checks["channel_layer"] = {"ok": False, "error": str(exc)}
    beat = None
    if checks["database"]["ok"]:
        beat = WorkerHeartbeat.objects.filter(name="default").first()
    fresh = bool(beat and timezone.now() - beat.beat_at < HEARTBEAT_STALE)
    checks["worker"] = {"ok": fresh, "last_heartbeat": beat.beat_at.isoformat() if beat else None}
    healthy = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "checks": checks},
        status=200 if healthy else 503,
    )
