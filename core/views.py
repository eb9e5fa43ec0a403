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

from core.charts import daily_bars
from core.filters import OperationFilter
from core.generic import PortalDetailView, PortalListView, get_for_user
from core.models import Operation, WorkerHeartbeat
from core.operations import OperationError, cancel_operation, retry_operation, start_operation
from core.policy import CANCEL, RETRY, is_staff, restrict

HEARTBEAT_STALE = timedelta(minutes=3)


def dashboard(request):
    ops = restrict(Operation, request.user)
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
        },
    )


def area(request, area: str):
    """The page of an app that has none yet (its AppConfig.placeholder)."""
    from django.apps import apps

    title, icon, empty = apps.get_app_config(area).placeholder
    return render(request, "pages/area.html", {"title": title, "icon": icon, "empty": empty})


class OperationList(PortalListView):
    model = Operation
    filterset_class = OperationFilter
    template_name = "core/operation_list.html"
    partial_template_name = "core/partials/operation_table.html"

    def optimise(self, qs):
        return qs.select_related("owner", "requested_by")


class OperationDetail(PortalDetailView):
    model = Operation
    template_name = "core/operation_detail.html"
    actions = (CANCEL, RETRY)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["lines"] = self.object.lines.all()[:2000]
        ctx["target_url"] = self.object.target_url()
        ctx["show_error_detail"] = is_staff(self.request.user)
        return ctx


@require_POST
def operation_cancel(request, uuid):
    op = get_for_user(Operation, request.user, CANCEL, uuid=uuid)
    try:
        cancel_operation(op, actor=request.user)
        messages.success(request, f"Cancellation of “{op}” requested.")
    except OperationError as exc:
        messages.error(request, str(exc))
    return redirect("operation", uuid=op.uuid)


@require_POST
def operation_retry(request, uuid):
    op = get_for_user(Operation, request.user, RETRY, uuid=uuid)
    try:
        new = retry_operation(op, actor=request.user)
    except OperationError as exc:
        messages.error(request, str(exc))
        return redirect("operation", uuid=op.uuid)
    messages.success(request, f"“{op}” queued again.")
    return redirect("operation", uuid=new.uuid)


@require_POST
def start_self_check(request):
    if not is_staff(request.user):
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


def _check(name: str, probe, checks: dict, details: dict) -> None:
    """Run one probe; the error text goes to ``details`` (staff only), never to ``checks``."""
    try:
        ok, detail = probe()
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health check
        ok, detail = False, {"error": str(exc)}
    checks[name] = "ok" if ok else "failing"
    details[name] = {"ok": ok, **detail}


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True, {"vendor": connection.vendor}


def _channel_layer():
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)("healthz.")
    async_to_sync(layer.send)(channel, {"type": "healthz"})
    return async_to_sync(layer.receive)(channel).get("type") == "healthz", {}


def _worker():
    beat = WorkerHeartbeat.objects.filter(name="default").first()
    fresh = bool(beat and timezone.now() - beat.beat_at < HEARTBEAT_STALE)
    return fresh, {"last_heartbeat": beat.beat_at.isoformat() if beat else None}


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """ok/failing per component for anyone (load balancers); the details for staff only."""
    checks: dict[str, str] = {}
    details: dict[str, dict] = {}
    _check("database", _database, checks, details)
    _check("channel_layer", _channel_layer, checks, details)
    if checks["database"] == "ok":
        _check("worker", _worker, checks, details)
    else:
        checks["worker"] = "failing"
    healthy = all(v == "ok" for v in checks.values())
    body: dict = {"status": "ok" if healthy else "failing", "checks": checks}
    if is_staff(request.user):
        body["details"] = details
    return JsonResponse(body, status=200 if healthy else 503)
