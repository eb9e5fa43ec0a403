from django.contrib import admin

from core.admin_base import PolicyAdmin
from hooks import services
from hooks.models import Cursor, Delivery, Event, SeenState, Webhook


@admin.register(Webhook)
class WebhookAdmin(PolicyAdmin):
    """Webhooks belong to the users who made them (portal or API); staff see and delete."""

    delete_service = staticmethod(services.do_delete_webhook)
    list_display = [
        "name",
        "owner",
        "receiver",
        "enabled",
        "stopped",
        "allow_private",
        "created_at",
    ]
    list_filter = ["enabled", "allow_private"]
    search_fields = ["name", "owner__email"]  # not the URL: it would reveal its credentials
    list_select_related = ["owner", "token"]
    exclude = ["secret", "url"]
    readonly_fields = ["receiver"]

    @admin.display(description="URL")
    def receiver(self, hook: Webhook) -> str:
        # Staff see it without the credentials it may carry (user, password, query values).
        return hook.redacted_url

    @admin.display(description="stopped because")
    def stopped(self, hook: Webhook) -> str:
        return hook.stopped_because()


@admin.register(Event)
class EventAdmin(PolicyAdmin):
    """Read-only: made by the fan-out (hooks/dispatch.py), pruned after
    PANEL_WEBHOOK_KEEP_DAYS."""

    list_display = ["type", "object_type", "object_id", "created_at"]
    list_filter = ["type"]
    show_full_result_count = False


@admin.register(Delivery)
class DeliveryAdmin(PolicyAdmin):
    list_display = ["webhook", "event", "state", "attempts", "response_status", "created_at"]
    list_filter = ["state"]
    list_select_related = ["webhook", "event"]
    show_full_result_count = False


@admin.register(Cursor)
class CursorAdmin(PolicyAdmin):
    list_display = ["audit_id", "live_id", "live_floor", "updated_at"]


@admin.register(SeenState)
class SeenStateAdmin(PolicyAdmin):
    list_display = ["topic", "key", "state"]
    list_filter = ["topic"]
