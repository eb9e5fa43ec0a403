from django.contrib import admin

from core.admin_base import PolicyAdmin
from websites import plans, services
from websites.models import Plan, SiteTraffic, Subscription, SystemAccount, Website


@admin.register(Website)
class WebsiteAdmin(PolicyAdmin):
    """Options and raw directives change through the service (which applies them); the rest
    is read-only until websites have their own create/update services."""

    list_display = ["domain", "server", "owner", "status", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["domain", "aliases", "owner__email", "server__name"]
    list_select_related = ["server", "owner"]
    update_service = staticmethod(services.do_update_website)
    fields = [
        "domain",
        "aliases",
        "server",
        "owner",
        "status",
        "status_message",
        "kind",
        "start_command",
        "app_port",
        "app_running",
        "app_state",
        "app_state_at",
        "options",
        "custom_directives",
        "admin_proxy",
        "retired_directives",
        "created_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        writable = services.writable_fields(request.user)
        return [f for f in self.fields if f not in writable]


@admin.register(Plan)
class PlanAdmin(PolicyAdmin):
    """Staff plans (no owner) and resellers' plans; writes go through websites.plans."""

    list_display = ["name", "owner", "websites", "databases", "disk_mb", "price"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["owner"]
    fields = ["name", "owner", *plans.PLAN_FIELDS[1:], "created_at"]
    readonly_fields = ["owner", "created_at"]
    create_service = staticmethod(plans.do_create_plan)
    update_service = staticmethod(plans.do_update_plan)
    delete_service = staticmethod(plans.do_delete_plan)


def _subscribe(obj, *, actor, data):
    user = data.get("user") or obj.user
    return plans.do_subscribe(user, data["plan"], actor=actor)


@admin.register(Subscription)
class SubscriptionAdmin(PolicyAdmin):
    list_display = ["user", "plan", "created_at"]
    search_fields = ["user__email", "plan__name"]
    list_select_related = ["user", "plan"]
    fields = ["user", "plan", "created_at"]
    readonly_fields = ["created_at"]
    create_service = staticmethod(lambda *, actor, data: _subscribe(None, actor=actor, data=data))
    update_service = staticmethod(_subscribe)
    delete_service = staticmethod(
        lambda obj, *, actor: plans.do_subscribe(obj.user, None, actor=actor)
    )

    def get_readonly_fields(self, request, obj=None):
        return ["user", "created_at"] if obj else ["created_at"]


@admin.register(SystemAccount)
class SystemAccountAdmin(PolicyAdmin):
    """Read-only: accounts are created, locked and removed by the website operations."""

    list_display = ["name", "server", "user", "status", "disk_used_mb", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "user__email", "server__name"]
    list_select_related = ["server", "user"]


@admin.register(SiteTraffic)
class SiteTrafficAdmin(PolicyAdmin):
    """Read-only: written by the hourly bandwidth count (websites/bandwidth.py)."""

    list_display = ["website", "month", "bytes"]
    list_select_related = ["website"]
    search_fields = ["website__domain"]
