import uuid

from django.contrib import admin
from django.core.cache import cache

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
from core.pagination import CappedPaginator


class BigTable:
    """Changelist settings for tables that grow without bound: no date hierarchy (its
    DISTINCT over the dates reads the whole table), no full count, a capped count, and a
    text search over the newest rows only (a substring search cannot use an index)."""

    paginator = CappedPaginator
    show_full_result_count = False
    search_window = 10_000
    search_help_text = (
        "Searches the newest 10,000 entries; a full UUID or id number finds any entry."
    )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return super().get_search_results(request, queryset, search_term)
        exact = _exact_lookup(queryset.model, term)
        if exact is not None:
            return queryset.filter(**exact), False
        newest = queryset.model._default_manager.order_by("-pk").values_list("pk", flat=True)
        floor = (newest.first() or 0) - self.search_window
        return super().get_search_results(request, queryset.filter(pk__gt=floor), search_term)


def _exact_lookup(model, term: str) -> dict | None:
    """An indexed lookup for a term that is a whole id or UUID."""
    if term.isdigit():
        return {"pk": int(term)}
    try:
        value = uuid.UUID(term)
    except ValueError:
        return None
    return {"uuid": value} if any(f.name == "uuid" for f in model._meta.fields) else None


def cached_values_filter(field: str, title: str):
    """A list filter offering the values found in ``field``, read at most every 10 minutes
    (Django's own asks the database for the distinct values on every page)."""

    class ValuesFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            model = model_admin.model
            key = f"admin-values:{model._meta.label}:{field}"
            values = cache.get_or_set(
                key,
                lambda: list(
                    model.objects.order_by(field).values_list(field, flat=True).distinct()
                ),
                600,
            )
            return [(value, value) for value in values]

        def queryset(self, request, queryset):
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    ValuesFilter.title = title
    return ValuesFilter


class LogLineInline(admin.TabularInline):
    model = OperationLogLine
    fields = ["created_at", "level", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Operation)
class OperationAdmin(BigTable, AuditedModelAdmin):
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
class OperationLogLineAdmin(BigTable, ReadOnlyAdmin):
    list_display = ["created_at", "operation", "level", "message"]
    list_filter = ["level"]
    search_fields = ["message", "operation__kind"]
    list_select_related = ["operation"]


@admin.register(AuditEntry)
class AuditEntryAdmin(BigTable, ReadOnlyAdmin):
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
    readonly_fields = [f.name for f in AuditEntry._meta.fields]


@admin.register(AuditHead)
class AuditHeadAdmin(ReadOnlyAdmin):
    list_display = ["last_id", "last_hash"]
