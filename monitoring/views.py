"""Monitoring's parts of other apps' pages (added in apps.py through core.sections)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View

from core import events, sharing
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
from core.policy import CHANGE
from core.tables import Column, Table
from monitoring import checks, services
from monitoring.filters import (
    AlertFilter,
    ChannelFilter,
    CheckFilter,
    MaintenanceWindowFilter,
    RuleFilter,
)
from monitoring.forms import (
    ChannelForm,
    CheckForm,
    MaintenanceWindowForm,
    RuleForm,
    SilenceForm,
    StatusPageForm,
)
from monitoring.models import (
    Alert,
    AlertRule,
    Check,
    MaintenanceWindow,
    NotificationChannel,
    StatusPage,
)
from monitoring.series import RANGES
from servers.models import Server


def server_metrics_section(server: Server, user) -> dict:
    """The server page's metrics: its live card and charts."""
    live_since = events.current_seq()  # before the data, as every live page does
    fresh = Server.objects.select_related("monitor").get(pk=server.pk)
    return {"s": fresh, "live_since": live_since, "ranges": list(RANGES)}


# --- alerts, rules, channels, checks, status page -----------------------------------------

ALERT_TABLE = Table(
    columns=(
        Column("Alert"),
        Column("State"),
        Column("Started", "hidden sm:table-cell"),
        Column("Rule", "hidden md:table-cell"),
    ),
    row_template="monitoring/partials/alert_row.html",
    empty_icon="triangle-alert",
    empty_text="No alerts. Rules you add fire here.",
    testid="alerts-table",
    live="/ws/live/alerts/",
    rows_id="alert-rows",
)
RULE_TABLE = Table(
    columns=(Column("Rule"), Column("Condition"), Column("Enabled", "hidden sm:table-cell")),
    row_template="monitoring/partials/rule_row.html",
    empty_icon="triangle-alert",
    empty_text="No alert rules yet.",
    testid="rules-table",
)
CHANNEL_TABLE = Table(
    columns=(Column("Channel"), Column("Kind"), Column("Enabled", "hidden sm:table-cell")),
    row_template="monitoring/partials/channel_row.html",
    empty_icon="upload",
    empty_text="No notification channels yet.",
    testid="channels-table",
)
CHECK_TABLE = Table(
    columns=(
        Column("Check"),
        Column("Status"),
        Column("Response", "hidden sm:table-cell"),
        Column("Uptime 24h / 30d", "hidden md:table-cell"),
    ),
    row_template="monitoring/partials/check_row.html",
    empty_icon="activity",
    empty_text="No uptime checks yet.",
    testid="checks-table",
    live="/ws/live/checks/",
    rows_id="check-rows",
)


class AlertList(LivePageMixin, PortalListView):
    """The alert history: firing ones first, then the resolved ones, newest first."""

    model = Alert
    filterset_class = AlertFilter
    table = ALERT_TABLE
    template_name = "monitoring/alert_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("rule").order_by("state", "-started_at", "-id")


class AlertDetail(PortalDetailView):
    model = Alert
    template_name = "monitoring/alert_detail.html"
    actions = (CHANGE,)

    def optimise(self, qs):
        return qs.select_related("rule", "server", "acknowledged_by")


class AlertAcknowledge(PortalActionView):
    model = Alert
    service = staticmethod(services.do_acknowledge_alert)
    message = "Alert acknowledged."


class AlertSilence(View):
    """POST ``hours`` (0 lifts the silence)."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        alert = get_for_user(Alert, request.user, CHANGE, uuid=uuid)
        form = SilenceForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose how long to silence it.")
            return redirect_htmx_aware(request, alert.get_absolute_url())
        hours = form.cleaned_data["hours"]
        until = timezone.now() + timedelta(hours=hours) if hours else None
        services.do_silence_alert(alert, actor=request.user, data={"until": until})
        messages.success(request, "Silenced." if until else "Silence lifted.")
        return redirect_htmx_aware(request, alert.get_absolute_url())


class RuleList(PortalListView):
    model = AlertRule
    filterset_class = RuleFilter
    table = RULE_TABLE
    template_name = "monitoring/rule_list.html"
    partial_template_name = "components/table.html"


class UserFormMixin:
    """An edit view whose form offers only what the signed-in user may pick (servers,
    channels): the form gets the user."""

    def get_object(self, request, uuid):
        self.user = request.user
        return super().get_object(request, uuid)

    def form_kwargs(self) -> dict:
        return {"user": self.user}


class RuleEdit(UserFormMixin, PortalEditView):
    model = AlertRule
    form_class = RuleForm
    template_name = "monitoring/rule_form.html"
    create_service = staticmethod(services.do_create_rule)
    update_service = staticmethod(services.do_update_rule)
    created_message = "Rule {object} added."

    def success_url(self, obj) -> str:
        return reverse("alert_rules")


class RuleDelete(PortalDeleteView):
    model = AlertRule
    delete_service = staticmethod(services.do_delete_rule)
    success_url = reverse_lazy("alert_rules")


WINDOW_TABLE = Table(
    columns=(
        Column("Window"),
        Column("When"),
        Column("Servers", "hidden sm:table-cell"),
        Column("State", "hidden sm:table-cell"),
    ),
    row_template="monitoring/partials/window_row.html",
    empty_icon="clock",
    empty_text="No maintenance windows yet.",
    testid="windows-table",
    live="/ws/live/maintenance/",
    rows_id="window-rows",
)


class WindowList(LivePageMixin, PortalListView):
    """Maintenance windows, soonest first, each with its state now (open, scheduled, ended)."""

    model = MaintenanceWindow
    filterset_class = MaintenanceWindowFilter
    table = WINDOW_TABLE
    template_name = "monitoring/window_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("server")


class WindowEdit(UserFormMixin, PortalEditView):
    model = MaintenanceWindow
    form_class = MaintenanceWindowForm
    template_name = "monitoring/window_form.html"
    create_service = staticmethod(services.do_create_window)
    update_service = staticmethod(services.do_update_window)
    created_message = "Maintenance window {object} added."

    def success_url(self, obj) -> str:
        return reverse("maintenance_windows")


class WindowDelete(PortalDeleteView):
    model = MaintenanceWindow
    delete_service = staticmethod(services.do_delete_window)
    success_url = reverse_lazy("maintenance_windows")


class ChannelList(PortalListView):
    model = NotificationChannel
    filterset_class = ChannelFilter
    table = CHANNEL_TABLE
    template_name = "monitoring/channel_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("owner")  # "shared by" on colleagues' channels


class ChannelEdit(PortalEditView):
    """Create, or (``uuid``) the channel's page: its settings and its last deliveries."""

    model = NotificationChannel
    form_class = ChannelForm
    template_name = "monitoring/channel_form.html"
    create_service = staticmethod(services.do_create_channel)
    update_service = staticmethod(services.do_update_channel)
    created_message = "Channel {object} added."

    def render_form(self, request, form, obj, status: int = 200):
        response = super().render_form(request, form, obj, status)
        return response

    def get(self, request, uuid=None):
        obj = self.get_object(request, uuid)
        # A webhook's URL whole for its owner, redacted for colleagues, its reseller and
        # staff (sent back unchanged, the service keeps the stored one).
        initial = {"target": obj.target_for(request.user)} if obj else None
        form = self.form_class(instance=obj, initial=initial)
        deliveries = obj.deliveries.select_related("alert")[:20] if obj else []
        ctx = {"form": form, "object": obj, "deliveries": deliveries}
        ctx["sharing"] = sharing.section(obj, request.user) if obj else None
        return render(request, self.template_name, ctx)


class ChannelDelete(PortalDeleteView):
    model = NotificationChannel
    delete_service = staticmethod(services.do_delete_channel)
    success_url = reverse_lazy("alert_channels")


class ChannelTest(PortalActionView):
    model = NotificationChannel
    service = staticmethod(services.do_send_test)
    message = "Test notice sent; its delivery is listed below."


class CheckList(LivePageMixin, PortalListView):
    model = Check
    filterset_class = CheckFilter
    table = CHECK_TABLE
    template_name = "monitoring/check_list.html"
    partial_template_name = "components/table.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        rows = list(ctx["object_list"])
        shares = checks.uptime(rows)
        for row in rows:
            row.uptime = shares.get(row.pk, {"24h": None, "30d": None})
        ctx["object_list"] = rows
        return ctx


class CheckDetail(PortalDetailView):
    model = Check
    template_name = "monitoring/check_detail.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        check = ctx["object"]
        ctx["uptime"] = checks.uptime([check]).get(check.pk, {"24h": None, "30d": None})
        ctx["results"] = check.results.all()[:50]
        return ctx


class CheckEdit(PortalEditView):
    model = Check
    form_class = CheckForm
    template_name = "monitoring/check_form.html"
    create_service = staticmethod(services.do_create_check)
    update_service = staticmethod(services.do_update_check)
    created_message = "Check {object} added; it runs within a minute."


class CheckDelete(PortalDeleteView):
    model = Check
    delete_service = staticmethod(services.do_delete_check)
    success_url = reverse_lazy("uptime_checks")


class StatusPageSettings(View):
    """Turn the public status page on or off; choose which checks it shows (``public``)."""

    def get(self, request):
        page = StatusPage.objects.filter(owner=request.user).first()
        form = StatusPageForm(instance=page)
        return render(request, "monitoring/status_settings.html", self._ctx(request, form, page))

    def post(self, request):
        page = StatusPage.objects.filter(owner=request.user).first()
        form = StatusPageForm(request.POST, instance=page)
        if form.is_valid():
            try:
                services.do_save_status_page(actor=request.user, data=dict(form.cleaned_data))
                messages.success(request, "Status page saved.")
                return redirect_htmx_aware(request, reverse("status_settings"))
            except ValidationError as exc:
                form_errors_from(form, exc)
        ctx = self._ctx(request, form, page)
        return render(request, "monitoring/status_settings.html", ctx, status=400)

    def _ctx(self, request, form, page) -> dict:
        mine = Check.objects.filter(owner=request.user)
        return {"form": form, "page": page, "public_checks": mine.filter(public=True)}


@method_decorator(login_not_required, name="dispatch")
class PublicStatusPage(View):
    """No login: the owner's checks marked public, their status and uptime. No targets or
    addresses are shown, only the names the owner gave."""

    def get(self, request, slug):
        page = get_object_or_404(
            StatusPage.objects.select_related("owner"), slug=slug, enabled=True
        )
        shown = list(Check.objects.filter(owner=page.owner, public=True, enabled=True))
        shares = checks.uptime(shown)
        rows = [(c, shares.get(c.pk, {"24h": None, "30d": None})) for c in shown]
        all_up = all(c.status == Check.Status.UP for c in shown)
        response = render(
            request, "monitoring/status_public.html", {"page": page, "rows": rows, "all_up": all_up}
        )
        response["X-Robots-Tag"] = "noindex"
        return response
