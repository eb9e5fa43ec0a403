from django.contrib import admin

from core.admin_base import PolicyAdmin
from monitoring import services
from monitoring.models import ServerMonitor


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
