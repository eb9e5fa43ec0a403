from django.contrib import admin

from core.admin_base import PolicyAdmin
from monitoring import services
from monitoring.models import (
    Alert,
    AlertRule,
    Check,
    CheckResult,
    Delivery,
    MaintenanceWindow,
    NotificationChannel,
    Rollup,
    Sample,
    ServerMonitor,
    StatusPage,
)


@admin.register(ServerMonitor)
class ServerMonitorAdmin(PolicyAdmin):
    update_service = services.do_update_monitor
    fields = ["server", *services.MONITOR_FIELDS, "failures", "last_sample_at", "last_error"]
    readonly_fields = ["server", "failures", "last_sample_at", "last_error"]
    list_display = ["server", "method", "enabled", "failures", "last_sample_at"]
    list_filter = ["method", "enabled"]
    search_fields = ["server__name"]
    list_select_related = ["server"]

    def service_data(self, form) -> dict:
        return {k: v for k, v in form.cleaned_data.items() if k in services.MONITOR_FIELDS}


@admin.register(Sample)
class SampleAdmin(PolicyAdmin):
    """Read-only: raw samples are written by the collector and pruned after 48 hours."""

    list_display = ["server", "at"]
    list_select_related = ["server"]
    show_full_result_count = False


@admin.register(Rollup)
class RollupAdmin(PolicyAdmin):
    """Read-only: rollups are written and pruned by the monitoring schedules."""

    list_display = ["server", "step", "start", "count"]
    list_filter = ["step"]
    list_select_related = ["server"]
    show_full_result_count = False


@admin.register(AlertRule)
class AlertRuleAdmin(PolicyAdmin):
    """Rules belong to the users who made them (portal or API); staff see and delete."""

    delete_service = staticmethod(services.do_delete_rule)
    list_display = ["name", "owner", "kind", "metric", "comparison", "threshold", "enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["owner"]
    exclude = ["channels"]


@admin.register(Alert)
class AlertAdmin(PolicyAdmin):
    """Read-only: alerts are opened and resolved by the engine (acknowledge in the portal)."""

    list_display = ["label", "rule", "owner", "state", "started_at", "resolved_at"]
    list_filter = ["state", "kind"]
    search_fields = ["label", "rule__name"]
    list_select_related = ["rule", "owner"]
    show_full_result_count = False


@admin.register(NotificationChannel)
class NotificationChannelAdmin(PolicyAdmin):
    delete_service = staticmethod(services.do_delete_channel)
    list_display = ["name", "owner", "kind", "enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["owner"]
    exclude = ["secret", "target"]
    readonly_fields = ["receiver"]

    @admin.display(description="target")
    def receiver(self, channel: NotificationChannel) -> str:
        # A webhook's URL without the token it may carry (path, query values, user).
        return channel.redacted_target


@admin.register(Delivery)
class DeliveryAdmin(PolicyAdmin):
    list_display = ["channel", "event", "state", "attempts", "response_status", "created_at"]
    list_filter = ["state", "event"]
    list_select_related = ["channel"]
    exclude = ["alert"]
    show_full_result_count = False


@admin.register(Check)
class CheckAdmin(PolicyAdmin):
    delete_service = staticmethod(services.do_delete_check)
    list_display = ["name", "owner", "kind", "status", "last_checked_at", "enabled"]
    list_filter = ["kind", "status", "enabled"]
    search_fields = ["name", "target", "owner__email"]
    list_select_related = ["owner"]


@admin.register(CheckResult)
class CheckResultAdmin(PolicyAdmin):
    list_display = ["uptime_check", "at", "ok", "response_ms", "status_code"]
    list_filter = ["ok"]
    list_select_related = ["uptime_check"]
    show_full_result_count = False


@admin.register(StatusPage)
class StatusPageAdmin(PolicyAdmin):
    list_display = ["title", "owner", "enabled"]
    list_select_related = ["owner"]
    exclude = ["slug"]  # the slug is the page's only protection


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(PolicyAdmin):
    """Through the services, so servers' statuses follow and every change is audited."""

    create_service = staticmethod(services.do_create_window)
    update_service = staticmethod(services.do_update_window)
    delete_service = staticmethod(services.do_delete_window)
    fields = services.WINDOW_FIELDS
    list_display = ["name", "owner", "scope", "starts_at", "ends_at", "repeat", "time_zone"]
    list_filter = ["scope", "repeat"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["owner"]

    def service_data(self, form) -> dict:
        return {k: v for k, v in form.cleaned_data.items() if k in services.WINDOW_FIELDS}
