from django import forms
from django.contrib import admin, messages

from core.admin_base import PolicyAdmin, PolicyInline, allowed, each_allowed
from core.forms import secret_field
from core.policy import ACCEPT_HOST_KEY, APPLY
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


class FirewallRuleInline(PolicyInline):
    """Shown on the server; rules are added and changed on their own page (audited, guarded
    against lock-out and applied, like everywhere else)."""

    model = FirewallRule
    fields = services.RULE_FIELDS
    readonly_fields = services.RULE_FIELDS


class ServerAdminForm(forms.ModelForm):
    private_key = secret_field(textarea=True, help_text="Blank keeps the current key.")
    password = secret_field(help_text="Blank keeps the current password.")

    class Meta:
        model = Server
        fields = [*services.SERVER_FIELDS, *services.SERVER_SECRETS]


@admin.register(Server)
class ServerAdmin(PolicyAdmin):
    form = ServerAdminForm
    create_service = services.do_create_server
    update_service = services.do_update_server
    delete_service = services.do_delete_server
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
    inlines = [FirewallRuleInline]
    actions = ["accept_host_key", "apply", "check_drift"]

    def service_data(self, form) -> dict:
        data = super().service_data(form)
        for name in services.SERVER_SECRETS:
            if not data.get(name):
                data.pop(name, None)  # blank keeps the stored secret
        return data

    @admin.display(boolean=True, description="host key changed")
    def host_key_changed(self, obj):
        return bool(obj.pending_host_key)

    @admin.action(description="Accept the new host key", permissions=["accept_host_key"])
    def accept_host_key(self, request, queryset):
        for server in allowed(request, queryset, ACCEPT_HOST_KEY).exclude(pending_host_key=""):
            services.do_accept_host_key(server, actor=request.user)
            self.message_user(request, f"{server}: new host key accepted.", messages.SUCCESS)

    @admin.action(description="Apply managed files now", permissions=["apply"])
    def apply(self, request, queryset):
        each_allowed(
            self, request, queryset, APPLY, services.start_apply, "Apply queued for {n} server(s)."
        )

    @admin.action(description="Check for drift", permissions=["apply"])
    def check_drift(self, request, queryset):
        each_allowed(
            self,
            request,
            queryset,
            APPLY,
            services.start_drift_check,
            "Drift check queued for {n} server(s).",
        )


def _create_rule(*, actor, data):
    data = dict(data)
    return services.do_save_rule(data.pop("server"), actor=actor, data=data)


def _update_rule(rule, *, actor, data):
    data = {k: v for k, v in data.items() if k != "server"}  # a rule never moves
    return services.do_save_rule(rule.server, actor=actor, data=data, rule=rule)


@admin.register(FirewallRule)
class FirewallRuleAdmin(PolicyAdmin):
    create_service = _create_rule
    update_service = _update_rule
    delete_service = services.do_delete_rule
    fields = ["server", *services.RULE_FIELDS]
    list_display = ["server", *services.RULE_FIELDS]
    list_filter = ["action", "protocol"]
    search_fields = ["server__name", "comment", "source"]
    list_select_related = ["server"]

    def get_readonly_fields(self, request, obj=None):
        return ["server"] if obj is not None else []


@admin.register(DriftItem)
class DriftItemAdmin(PolicyAdmin):
    list_display = ["server", "path", "kind", "detected_at"]
    list_filter = ["kind"]
    search_fields = ["server__name", "path"]
    list_select_related = ["server"]


@admin.register(TerminalSession)
class TerminalSessionAdmin(PolicyAdmin):
    list_display = ["server", "user", "ip", "started_at", "ended_at", "bytes_in", "bytes_out"]
    search_fields = ["server__name", "user__email"]
    list_select_related = ["server", "user"]


@admin.register(TerminalTicket)
class TerminalTicketAdmin(PolicyAdmin):
    list_display = ["user", "server", "expires_at", "used_at"]
    exclude = ["digest"]
    list_select_related = ["user", "server"]


@admin.register(AppliedFile)
class AppliedFileAdmin(PolicyAdmin):
    """What the apply engine has written and verified on each server (its record)."""

    list_display = ["server", "path", "service", "unit", "mode", "owner", "applied_at"]
    list_filter = ["service"]
    search_fields = ["server__name", "path", "unit"]
    list_select_related = ["server"]
    show_full_result_count = False


@admin.register(DirtyUnit)
class DirtyUnitAdmin(PolicyAdmin):
    list_display = ["server", "target", "unit", "created_at"]
    list_select_related = ["server"]
