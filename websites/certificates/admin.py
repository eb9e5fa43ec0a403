from django.contrib import admin

from core.admin_base import PolicyAdmin
from websites.certificates.models import AcmeAccount, Certificate


@admin.register(Certificate)
class CertificateAdmin(PolicyAdmin):
    """Read-only: certificates are issued, uploaded and renewed through their services (the
    site's TLS page or the API). The private key is never shown."""

    list_display = ["website", "source", "status", "not_after", "installed"]
    list_filter = ["status", "source", "key_type"]
    search_fields = ["website__domain", "domains"]
    list_select_related = ["website"]
    fields = [
        "website",
        "domains",
        "source",
        "key_type",
        "status",
        "last_error",
        "not_before",
        "not_after",
        "fingerprint",
        "installed",
        "fullchain",
        "updated_at",
    ]
    readonly_fields = fields


@admin.register(AcmeAccount)
class AcmeAccountAdmin(PolicyAdmin):
    list_display = ["directory", "uri", "created_at"]
    fields = ["directory", "uri", "email", "created_at"]
    readonly_fields = fields
