from django.contrib import admin

from core.admin_base import AuditedModelAdmin
from websites.models import Website


@admin.register(Website)
class WebsiteAdmin(AuditedModelAdmin):
    list_display = ["domain", "server", "owner", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["domain", "aliases", "owner__email", "server__name"]
    list_select_related = ["server", "owner"]
    readonly_fields = ["uuid", "status", "status_message", "created_at"]
