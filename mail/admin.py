from django.contrib import admin

from core.admin_base import PolicyAdmin
from mail import services
from mail.models import MailAlias, Mailbox, MailDomain, MailServerState


class _ReadOnly(PolicyAdmin):
    """Rows change through the portal or the API (passwords are set there and hashed);
    the admin reads them and deletes through the services."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields if f.name != "password_hash"]

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(MailDomain)
class MailDomainAdmin(_ReadOnly):
    list_display = ["domain", "server", "owner", "status", "suspended", "created_at"]
    list_filter = ["status", "suspended"]
    search_fields = ["domain", "owner__email"]
    list_select_related = ["server", "owner"]
    update_service = staticmethod(services.do_update_mail_domain)
    delete_service = staticmethod(services.do_delete_mail_domain)
    fields = ["domain", "server", "owner", "suspended", "status", "status_message"]

    def get_readonly_fields(self, request, obj=None):
        return ["domain", "server", "owner", "status", "status_message"]


@admin.register(Mailbox)
class MailboxAdmin(_ReadOnly):
    list_display = ["local_part", "domain", "status", "quota_mb", "suspended"]
    list_filter = ["status", "suspended"]
    search_fields = ["local_part", "domain__domain"]
    list_select_related = ["domain"]
    exclude = ["password_hash"]
    delete_service = staticmethod(services.do_delete_mailbox)


@admin.register(MailAlias)
class MailAliasAdmin(_ReadOnly):
    list_display = ["local_part", "domain", "destinations"]
    search_fields = ["local_part", "domain__domain"]
    list_select_related = ["domain"]
    delete_service = staticmethod(services.do_delete_alias)


@admin.register(MailServerState)
class MailServerStateAdmin(PolicyAdmin):
    """What was last read of a mail server's queue (the mail queue page acts on it)."""

    list_display = ["server", "queue_total", "queue_read_at"]
    list_select_related = ["server"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields]
