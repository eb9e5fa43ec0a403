from allauth.account.models import EmailAddress
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.sites.models import Site
from django_q.models import Failure, OrmQ, Schedule, Success

from core.admin_base import PolicyAdmin, allowed
from core.models import (
    AuditEntry,
    AuditHead,
    Operation,
    OperationLock,
    OperationLogLine,
    WorkerHeartbeat,
)
from core.operations import cancel_operation
from core.policy import CANCEL


class LogLineInline(admin.TabularInline):
    model = OperationLogLine
    fields = ["created_at", "level", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Operation)
class OperationAdmin(PolicyAdmin):
    list_display = [
        "kind",
        "target_label",
        "state",
        "progress",
        "owner",
        "requested_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["state", "kind"]
    search_fields = ["kind", "target_label", "uuid", "owner__email"]
    list_select_related = ["owner", "requested_by"]
    date_hierarchy = "created_at"
    inlines = [LogLineInline]
    actions = ["cancel"]

    @admin.action(description="Cancel selected operations", permissions=["cancel"])
    def cancel(self, request, queryset):
        done = 0
        for op in allowed(request, queryset, CANCEL):
            if not op.is_finished:
                cancel_operation(op, actor=request.user)
                done += 1
        self.message_user(request, f"Cancellation requested for {done} operation(s).")


@admin.register(OperationLock)
class OperationLockAdmin(PolicyAdmin):
    list_display = ["key", "operation", "acquired_at"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(PolicyAdmin):
    list_display = ["name", "beat_at"]


@admin.register(OperationLogLine)
class OperationLogLineAdmin(PolicyAdmin):
    list_display = ["created_at", "operation", "level", "message"]
    list_filter = ["level"]
    search_fields = ["message", "operation__kind"]
    list_select_related = ["operation"]


@admin.register(AuditEntry)
class AuditEntryAdmin(PolicyAdmin):
    list_display = [
        "id",
        "created_at",
        "actor_label",
        "ip",
        "action",
        "object_type",
        "object_label",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_label", "object_label", "object_id", "action"]
    date_hierarchy = "created_at"


@admin.register(AuditHead)
class AuditHeadAdmin(PolicyAdmin):
    list_display = ["last_id", "last_hash"]


# Library models: read-only here (a change would bypass the services and the audit log).
# Groups are not used: roles and the policy decide, django-guardian grants single objects.
admin.site.unregister(Group)
for model, columns in (
    (EmailAddress, ["email", "user", "verified", "primary"]),
    (Site, ["domain", "name"]),
    (Schedule, ["name", "func", "schedule_type", "minutes", "next_run"]),
    (Success, ["name", "func", "started", "stopped"]),
    (Failure, ["name", "func", "started", "stopped"]),
    (OrmQ, ["key", "lock"]),
):
    admin.site.unregister(model)
    admin.site.register(
        model, type(f"{model.__name__}Admin", (PolicyAdmin,), {"list_display": columns})
    )
