from django.contrib import admin

from core.admin_base import PolicyAdmin
from websites.models import Website


@admin.register(Website)
class WebsiteAdmin(PolicyAdmin):
    """Read-only until websites have their services (a change must reach the server)."""

    list_display = ["domain", "server", "owner", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["domain", "aliases", "owner__email", "server__name"]
    list_select_related = ["server", "owner"]
