from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from csp.decorators import csp_update
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import Role
from core.generic import PortalDetailView, PortalListView, form_errors_from, get_for_user
from core.live import LivePageMixin
from core.models import Operation
from core.policy import CHANGE, VIEW
from servers import services
from servers.filters import ServerFilter
from servers.forms import FirewallRuleForm
from servers.guided_form import GuidedServerForm
from servers.models import FirewallRule, Server, TerminalTicket

TICKET_SECONDS = 60


class ServerList(LivePageMixin, PortalListView):
    model = Server
    filterset_class = ServerFilter
    template_name = "servers/server_list.html"
    partial_template_name = "servers/partials/server_table.html"

    def optimise(self, qs):
        return qs.select_related("owner")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["sort_choices"] = SORTS
        if ctx["filterset"] and ctx["filterset"].form.changed_data:
            ctx["empty_text"] = "No server matches."
        return ctx


SORTS = [
    ("", "Name, A to Z"),
    ("-name", "Name, Z to A"),
    ("status", "Status"),
    ("-last_seen", "Seen most recently"),
    ("last_seen", "Seen longest ago"),
]


class ServerDetail(PortalDetailView):
    model = Server
    template_name = "servers/server_detail.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        server = self.object
        user = self.request.user
        ctx.update(
            may_change=Server.objects.for_user(user, CHANGE).filter(pk=server.pk).exists(),
            is_admin=user.role == Role.ADMIN,
            rules=server.firewall_rules.all(),
            rule_form=FirewallRuleForm(),
            drift=server.drift.all(),
            websites=server.websites.all()[:50],
            operations=Operation.objects.for_user(user)
            .filter(lock_key=server.lock_key)
            .select_related("requested_by")[:10],
            terminal_sessions=server.terminal_sessions.select_related("user")[:10]
            if user.role == Role.ADMIN
            else [],
            fingerprint=server.host_key_fingerprint(),
            pending_fingerprint=server.host_key_fingerprint(server.pending_host_key),
        )
        return ctx


def _may_manage_servers(user) -> bool:
    return user.role in (Role.ADMIN, Role.RESELLER)


def server_form(request, uuid=None):
    user = request.user
    server = get_for_user(Server, user, CHANGE, uuid=uuid) if uuid else None
    if server is None and not _may_manage_servers(user):
        raise Http404
    form = GuidedServerForm(request.POST or None, instance=server, user=user)
    validating = request.POST.get("_validate") == "1"
    if request.method == "POST" and form.is_valid() and not validating:
        try:
            if server:
                data = form.service_data()
                server = services.do_update_server(
                    Server.objects.get(pk=server.pk), actor=user, data=data
                )
                messages.success(request, f"{server.name} saved.")
            else:
                server = services.do_create_server(actor=user, data=form.service_data())
                messages.success(
                    request,
                    f"{server.name} added. Put its public key in "
                    "authorized_keys, then test the connection.",
                )
            return redirect("server", uuid=server.uuid)
        except ValidationError as exc:
            form_errors_from(form, exc)
    template = (
        "servers/partials/server_form_fields.html"
        if validating and request.htmx
        else "servers/server_form.html"
    )
    return render(
        request,
        template,
        {"form": form, "server": server},
        status=400 if form.errors and not validating else 200,
    )


@require_POST
def server_delete(request, uuid):
    server = get_for_user(Server, request.user, CHANGE, uuid=uuid)
    try:
        services.do_delete_server(server, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("server", uuid=server.uuid)
    messages.success(request, f"{server.name} deleted.")
    return redirect("servers")


ACTIONS = {
    "test": services.start_test_connection,
    "facts": services.start_gather_facts,
    "apply": services.start_apply,
    "drift": services.start_drift_check,
}


@require_POST
def server_action(request, uuid, action):
    if action not in ACTIONS:
        raise Http404
    server = get_for_user(Server, request.user, CHANGE, uuid=uuid)
    op = ACTIONS[action](server, actor=request.user)
    return redirect("operation", uuid=op.uuid)


@require_POST
def accept_host_key(request, uuid):
    if request.user.role != Role.ADMIN:
        raise Http404
    server = get_for_user(Server, request.user, CHANGE, uuid=uuid)
    try:
        services.do_accept_host_key(server, actor=request.user)
        messages.success(request, "New host key accepted.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("server", uuid=server.uuid)


@require_POST
def rule_add(request, uuid):
    server = get_for_user(Server, request.user, CHANGE, uuid=uuid)
    form = FirewallRuleForm(request.POST)
    if form.is_valid():
        try:
            services.do_save_rule(server, actor=request.user, data=form.cleaned_data)
            messages.success(request, "Rule added; applying it to the server.")
            return redirect("server", uuid=server.uuid)
        except ValidationError as exc:
            form_errors_from(form, exc)
    view = ServerDetail.as_view()
    request.method = "GET"
    response = view(request, uuid=uuid)
    response.context_data["rule_form"] = form
    response.status_code = 400
    return response


@require_POST
def rule_delete(request, uuid, rule_uuid):
    server = get_for_user(Server, request.user, CHANGE, uuid=uuid)
    rule = get_for_user(FirewallRule, request.user, CHANGE, uuid=rule_uuid, server=server)
    try:
        services.do_delete_rule(rule, actor=request.user)
        messages.success(request, "Rule removed; applying the change.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("server", uuid=server.uuid)


def _terminal_server(request, uuid) -> Server:
    if request.user.role != Role.ADMIN:
        raise Http404
    return get_for_user(Server, request.user, VIEW, uuid=uuid)


@csp_update({"style-src": ["'unsafe-inline'"]})  # xterm.js injects <style>; scripts stay strict
def terminal(request, uuid):
    server = _terminal_server(request, uuid)
    return render(request, "servers/terminal.html", {"server": server})


@require_POST
def terminal_ticket(request, uuid):
    """A single-use ticket, valid 60 s and only for this browser session, to open the socket."""
    server = _terminal_server(request, uuid)
    raw = secrets.token_urlsafe(32)
    TerminalTicket.objects.create(
        digest=hashlib.sha256(raw.encode()).hexdigest(),
        user=request.user,
        server=server,
        session_key=request.session.session_key or "",
        expires_at=timezone.now() + timedelta(seconds=TICKET_SECONDS),
    )
    return JsonResponse({"ticket": raw, "url": f"/ws/servers/{server.uuid}/terminal/"})
