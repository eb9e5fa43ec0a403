from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core import health, sharing
from core.filters import OperationFilter
from core.generic import PortalDetailView, PortalListView, get_for_user, redirect_htmx_aware
from core.live import LivePageMixin
from core.models import Operation
from core.operations import OperationError, cancel_operation, retry_operation, start_operation
from core.pagination import KeysetListMixin
from core.policy import CANCEL, RETRY, VIEW, is_staff


def area(request, area: str):
    """The page of an app that has none yet (its AppConfig.placeholder)."""
    from django.apps import apps

    title, icon, empty = apps.get_app_config(area).placeholder
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
    actions = (CANCEL, RETRY)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        lines = list(self.object.lines.all()[:2000])
        ctx["lines"] = lines
        ctx["last_line"] = lines[-1].pk if lines else 0
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


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """ok/failing per component for anyone (load balancers); the details for staff only."""
    found = health.checks()
    checks = {name: "ok" if c["ok"] else "failing" for name, c in found.items()}
    healthy = all(v == "ok" for v in checks.values())
    body: dict = {"status": "ok" if healthy else "failing", "checks": checks}
    if is_staff(request.user):
        body["details"] = found
    return JsonResponse(body, status=200 if healthy else 503)


@login_not_required
@never_cache
@require_GET
def healthz_live(request):
    """Liveness: this process answers. Asks nothing else (a database outage must not get
    every web process restarted by its supervisor)."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def healthz_ready(request):
    """Readiness: this web process can serve pages now (database and channel layer answer)
    and is not draining for a restart. 503 takes it out of a load balancer's rotation."""
    if health.draining():
        return JsonResponse({"status": "draining"}, status=503)
    found = health.checks(worker=False)
    checks = {name: "ok" if c["ok"] else "failing" for name, c in found.items()}
    ready = all(v == "ok" for v in checks.values())
    body: dict = {"status": "ok" if ready else "failing", "checks": checks}
    if is_staff(request.user):
        body["details"] = found
    return JsonResponse(body, status=200 if ready else 503)


# --- sharing one object with a colleague (core/sharing.py) ----------------------------------


def _shared_object(request, label: str, uuid):
    """The object to share: its model must be shareable, the user must see it and may
    share it; anything else is 404 (as out of reach always is)."""
    model = sharing.model_for(label)
    if model is None:
        raise Http404
    obj = get_for_user(model, request.user, VIEW, uuid=uuid)
    if not sharing.may_share(request.user, obj):
        raise Http404
    return obj


@require_POST
def share_add(request, label: str, uuid):
    obj = _shared_object(request, label, uuid)
    data = {"email": request.POST.get("email", ""), "level": request.POST.get("level", "view")}
    try:
        user = sharing.do_share(obj, actor=request.user, data=data)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Shared with {user.email}.")
    return redirect_htmx_aware(request, obj.get_absolute_url())


@require_POST
def share_remove(request, label: str, uuid, user_id: int):
    obj = _shared_object(request, label, uuid)
    user = next((u for u, _level in sharing.shares_of(obj) if u.pk == user_id), None)
    if user is None:
        raise Http404
    sharing.do_unshare(obj, actor=request.user, data={"user": user})
    messages.success(request, f"{user.email} no longer has access.")
    return redirect_htmx_aware(request, obj.get_absolute_url())
