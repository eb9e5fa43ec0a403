from django.contrib import admin

from core.admin_base import AuditedModelAdmin, ReadOnlyAdmin
from core.models import (
    AuditEntry,
    AuditHead,
    Operation,
    OperationLock,
    OperationLogLine,
    WorkerHeartbeat,
)
from core.operations import cancel_operation


class LogLineInline(admin.TabularInline):
    model = OperationLogLine
    fields = ["created_at", "level", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Operation)
class OperationAdmin(AuditedModelAdmin):
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
    readonly_fields = [f.name for f in Operation._meta.fields]
    inlines = [LogLineInline]
    actions = ["cancel"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel selected operations", permissions=["change"])
    def cancel(self, request, queryset):
        done = 0
        for op in queryset:
            if not op.is_finished:
                cancel_operation(op, actor=request.user)
                done += 1
        self.message_user(request, f"Cancellation requested for {done} operation(s).")


@admin.register(OperationLock)
class OperationLockAdmin(ReadOnlyAdmin):
    list_display = ["key", "operation", "acquired_at"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "beat_at"]


@admin.register(OperationLogLine)
class OperationLogLineAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "operation", "level", "message"]
    list_filter = ["level"]
    search_fields = ["message", "operation__kind"]
    list_select_related = ["operation"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
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
    readonly_fields = [f.name for f in AuditEntry._meta.fields]


@admin.register(AuditHead)
class AuditHeadAdmin(ReadOnlyAdmin):
    list_display = ["last_id", "last_hash"]
