from django.contrib import admin, messages

from core.admin_base import AuditedModelAdmin, ReadOnlyAdmin
from servers import services
from servers.models import (
    AppliedFile,
    DirtyUnit,
    DriftItem,
    FirewallRule,
    Server,
    TerminalSession,
    TerminalTicket,
)


class FirewallRuleInline(admin.TabularInline):
    model = FirewallRule
    extra = 0
    fields = ["position", "action", "protocol", "port", "port_end", "source", "comment"]


@admin.register(Server)
class ServerAdmin(AuditedModelAdmin):
    list_display = [
        "name",
        "address",
        "ssh_port",
        "status",
        "kind",
        "owner",
        "last_seen_at",
        "host_key_changed",
    ]
    list_filter = ["status", "kind", "transport"]
    search_fields = ["name", "address", "location", "uuid"]
    list_select_related = ["owner"]
    readonly_fields = [
        "uuid",
        "host_key",
        "pending_host_key",
        "public_key",
        "facts",
        "facts_at",
        "last_seen_at",
        "panel_address",
        "last_error",
        "applied_at",
        "drift_checked_at",
        "created_at",
    ]
    exclude = ["private_key", "password"]
    inlines = [FirewallRuleInline]
    actions = ["accept_host_key", "apply", "check_drift"]

    @admin.display(boolean=True, description="host key changed")
    def host_key_changed(self, obj):
        return bool(obj.pending_host_key)

    @admin.action(description="Accept the new host key", permissions=["change"])
    def accept_host_key(self, request, queryset):
        for server in queryset.exclude(pending_host_key=""):
            services.do_accept_host_key(server, actor=request.user)
            self.message_user(request, f"{server}: new host key accepted.", messages.SUCCESS)

    @admin.action(description="Apply managed files now", permissions=["change"])
    def apply(self, request, queryset):
        for server in queryset:
            services.start_apply(server, actor=request.user)
        self.message_user(request, f"Apply queued for {queryset.count()} server(s).")

    @admin.action(description="Check for drift", permissions=["change"])
    def check_drift(self, request, queryset):
        for server in queryset:
            services.start_drift_check(server, actor=request.user)
        self.message_user(request, f"Drift check queued for {queryset.count()} server(s).")

    def delete_model(self, request, obj):
        services.do_delete_server(obj, actor=request.user)


@admin.register(FirewallRule)
class FirewallRuleAdmin(AuditedModelAdmin):
    list_display = [
        "server",
        "position",
        "action",
        "protocol",
        "port",
        "port_end",
        "source",
        "comment",
    ]
    list_filter = ["action", "protocol"]
    search_fields = ["server__name", "comment", "source"]
    list_select_related = ["server"]


@admin.register(DriftItem)
class DriftItemAdmin(ReadOnlyAdmin):
    list_display = ["server", "path", "kind", "detected_at"]
    list_filter = ["kind"]
    search_fields = ["server__name", "path"]
    list_select_related = ["server"]


@admin.register(TerminalSession)
class TerminalSessionAdmin(ReadOnlyAdmin):
    list_display = ["server", "user", "ip", "started_at", "ended_at", "bytes_in", "bytes_out"]
    search_fields = ["server__name", "user__email"]
    list_select_related = ["server", "user"]


@admin.register(TerminalTicket)
class TerminalTicketAdmin(ReadOnlyAdmin):
    list_display = ["user", "server", "expires_at", "used_at"]
    exclude = ["digest"]
    list_select_related = ["user", "server"]


@admin.register(AppliedFile)
class AppliedFileAdmin(ReadOnlyAdmin):
    """What the apply engine has written and verified on each server (its record)."""

    list_display = ["server", "path", "service", "unit", "mode", "owner", "applied_at"]
    list_filter = ["service"]
    search_fields = ["server__name", "path", "unit"]
    list_select_related = ["server"]
    show_full_result_count = False


@admin.register(DirtyUnit)
class DirtyUnitAdmin(ReadOnlyAdmin):
    list_display = ["server", "unit", "created_at"]
    list_select_related = ["server"]
