from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from csp.decorators import csp_update
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.generic import (
    PortalActionView,
    PortalDeleteView,
    PortalDetailView,
    PortalEditView,
    PortalListView,
    form_errors_from,
    get_for_user,
    redirect_htmx_aware,
)
from core.live import LivePageMixin
from core.models import Operation
from core.policy import (
    ACCEPT_HOST_KEY,
    APPLY,
    CHANGE,
    DELETE,
    TERMINAL,
    VIEW,
    is_staff,
    restrict,
)
from core.sections import sections_for
from core.tables import Column, Table
from servers import services
from servers.filters import ServerFilter
from servers.forms import FirewallRuleForm
from servers.guided_form import GuidedServerForm
from servers.models import FirewallRule, Server, TerminalSession, TerminalTicket

TICKET_SECONDS = 60
SERVER_TABLE = Table(
    columns=(
        Column("Name"),
        Column("Address", "hidden sm:table-cell"),
        Column("Status"),
        Column("Kind", "hidden md:table-cell"),
        Column("Owner", "hidden lg:table-cell"),
        Column("Last seen", "hidden sm:table-cell"),
    ),
    row_template="servers/partials/server_row.html",
    empty_icon="server",
    empty_text="No servers yet. Add one and the panel will reach it over SSH.",
    testid="servers-table",
    live="/ws/live/servers/",
    rows_id="srv-rows",
)
SORTS = [
    ("", "Name, A to Z"),
    ("-name", "Name, Z to A"),
    ("status", "Status"),
    ("-last_seen", "Seen most recently"),
    ("last_seen", "Seen longest ago"),
]


class ServerList(LivePageMixin, PortalListView):
    model = Server
    filterset_class = ServerFilter
    table = SERVER_TABLE
    template_name = "servers/server_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("owner")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["sort_choices"] = SORTS
        if ctx["filterset"] and ctx["filterset"].form.changed_data:
            ctx["empty_text"] = "No server matches."
        return ctx


class ServerDetail(PortalDetailView):
    model = Server
    template_name = "servers/server_detail.html"
    actions = (CHANGE, DELETE, APPLY, TERMINAL, ACCEPT_HOST_KEY)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        server = self.object
        user = self.request.user
        ctx.update(
            rules=server.firewall_rules.all(),
            rule_form=FirewallRuleForm(),
            drift=server.drift.all(),
            operations=restrict(Operation, user)
            .filter(lock_key=server.lock_key)
            .select_related("requested_by")[:10],
            terminal_sessions=restrict(TerminalSession, user)
            .filter(server=server)
            .select_related("user")[:10],
            fingerprint=server.host_key_fingerprint(),
            pending_fingerprint=server.host_key_fingerprint(server.pending_host_key),
            show_error_detail=is_staff(user),
            sections=sections_for("servers.server_detail", server, user),
        )
        return ctx


class ServerEdit(PortalEditView):
    """Add or edit a server with the guided form (servers/guided_form.py)."""

    model = Server
    form_class = GuidedServerForm
    template_name = "servers/server_form.html"
    fields_template_name = "servers/partials/server_form_fields.html"
    create_service = services.do_create_server
    update_service = services.do_update_server
    created_message = (
        "{object} added. Put its public key in authorized_keys, then test the connection."
    )

    def form_kwargs(self):
        return {"user": self.request.user}

    def service_data(self, form) -> dict:
        return form.service_data()


class ServerDelete(PortalDeleteView):
    model = Server
    delete_service = services.do_delete_server
    success_url = "/servers/"


class ServerAction(PortalActionView):
    model = Server
    action = APPLY


class TestConnection(ServerAction):
    service = services.start_test_connection


class GatherFacts(ServerAction):
    service = services.start_gather_facts


class PrepareServer(ServerAction):
    """POST php_versions (space separated): the Prepare server Operation."""

    def post(self, request, uuid):
        server = get_for_user(Server, request.user, APPLY, uuid=uuid)
        data = {"php_versions": request.POST.get("php_versions", "")}
        try:
            op = services.do_prepare_server(server, actor=request.user, data=data)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, server.get_absolute_url())
        return redirect_htmx_aware(request, op.get_absolute_url())


class RefreshBans(ServerAction):
    service = services.start_refresh_bans


class Unban(ServerAction):
    """POST jail and address: lift one fail2ban ban (an audited Operation)."""

    def post(self, request, uuid):
        server = get_for_user(Server, request.user, APPLY, uuid=uuid)
        data = {k: request.POST.get(k, "") for k in ("jail", "address")}
        try:
            op = services.do_unban(server, actor=request.user, data=data)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, server.get_absolute_url())
        return redirect_htmx_aware(request, op.get_absolute_url())


class Apply(ServerAction):
    service = services.start_apply


class CheckDrift(ServerAction):
    service = services.start_drift_check


class AcceptHostKey(PortalActionView):
    model = Server
    action = ACCEPT_HOST_KEY
    service = services.do_accept_host_key
    message = "New host key accepted."


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
    request.method = "GET"
    response = ServerDetail.as_view()(request, uuid=uuid)
    response.context_data["rule_form"] = form
    response.status_code = 400
    return response


@require_POST
def rule_delete(request, uuid, rule_uuid):
    server = get_for_user(Server, request.user, VIEW, uuid=uuid)
    rule = get_for_user(FirewallRule, request.user, DELETE, uuid=rule_uuid, server=server)
    try:
        services.do_delete_rule(rule, actor=request.user)
        messages.success(request, "Rule removed; applying the change.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("server", uuid=server.uuid)


@csp_update({"style-src": ["'unsafe-inline'"]})  # xterm.js injects <style>; scripts stay strict
def terminal(request, uuid):
    server = get_for_user(Server, request.user, TERMINAL, uuid=uuid)
    return render(request, "servers/terminal.html", {"server": server})


@require_POST
def terminal_ticket(request, uuid):
    """A single-use ticket, valid 60 s and only for this browser session, to open the socket."""
    server = get_for_user(Server, request.user, TERMINAL, uuid=uuid)
    raw = secrets.token_urlsafe(32)
    TerminalTicket.objects.create(
        digest=hashlib.sha256(raw.encode()).hexdigest(),
        user=request.user,
        server=server,
        session_key=request.session.session_key or "",
        expires_at=timezone.now() + timedelta(seconds=TICKET_SECONDS),
    )
    return JsonResponse({"ticket": raw, "url": f"/ws/servers/{server.uuid}/terminal/"})
