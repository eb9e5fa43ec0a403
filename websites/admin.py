from django.contrib import admin

from core.admin_base import PolicyAdmin
from websites import services
from websites.models import Website


@admin.register(Website)
class WebsiteAdmin(PolicyAdmin):
    """Options and raw directives change through the service (which applies them); the rest
    is read-only until websites have their own create/update services."""

    list_display = ["domain", "server", "owner", "status", "created_at"]
    list_filter = ["status"]
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
        "options",
        "custom_directives",
        "admin_proxy",
        "retired_directives",
        "created_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        writable = services.writable_fields(request.user)
        return [f for f in self.fields if f not in writable]
