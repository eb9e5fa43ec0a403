from allauth.account.models import EmailAddress
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.sites.models import Site
from django_q import admin as django_q_admin  # noqa: F401 - registers first: replaced below
from django_q.models import Failure, OrmQ, Schedule, Success

from core.admin_base import BigTable, PolicyAdmin, allowed, cached_values_filter
from core.models import (
    AuditEntry,
    AuditHead,
    LiveEvent,
    Operation,
    OperationDay,
    OperationLock,
    OperationLogLine,
    Worker,
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
class OperationAdmin(BigTable, PolicyAdmin):
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
    list_filter = ["state", cached_values_filter("kind", "kind")]
    search_fields = ["kind", "target_label", "owner__email"]  # a whole UUID: BigTable
    list_select_related = ["owner", "requested_by"]
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


@admin.register(Worker)
class WorkerAdmin(PolicyAdmin):
    list_display = ["name", "pid", "started_at", "beat_at", "stopping"]


@admin.register(OperationLogLine)
class OperationLogLineAdmin(BigTable, PolicyAdmin):
    list_display = ["created_at", "operation", "level", "message"]
    list_filter = ["level"]
    search_fields = ["message", "operation__kind"]
    list_select_related = ["operation"]


@admin.register(AuditEntry)
class AuditEntryAdmin(BigTable, PolicyAdmin):
    list_display = [
        "id",
        "created_at",
        "actor_label",
        "ip",
        "action",
        "object_type",
        "object_label",
    ]
    list_filter = [
        cached_values_filter("action", "action"),
        cached_values_filter("object_type", "object type"),
    ]
    search_fields = ["actor_label", "object_label", "object_id", "action"]


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
    if admin.site.is_registered(model):  # django-q leaves OrmQ out with a Redis broker
        admin.site.unregister(model)
    admin.site.register(
        model, type(f"{model.__name__}Admin", (PolicyAdmin,), {"list_display": columns})
    )


@admin.register(LiveEvent)
class LiveEventAdmin(BigTable, PolicyAdmin):
    """Change notices pages replay from (kept two hours)."""

    list_display = ["id", "created_at", "topic", "key"]
    list_filter = [cached_values_filter("topic", "topic")]


@admin.register(OperationDay)
class OperationDayAdmin(PolicyAdmin):
    """The dashboard chart's daily counts (core.rollups)."""

    list_display = ["day", "owner_id", "state", "count"]
    list_filter = ["state"]
    show_full_result_count = False
