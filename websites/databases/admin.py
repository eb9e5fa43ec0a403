from django import forms
from django.contrib import admin

from core.admin_base import PolicyAdmin, each_allowed
from core.forms import secret_field
from core.policy import CHANGE
from websites.databases import services
from websites.databases.models import CustomerDatabase, DatabaseGrant, DatabaseServer, DatabaseUser


class DatabaseServerAdminForm(forms.ModelForm):
    admin_password = secret_field(help_text="Stored encrypted. Blank keeps the current one.")

    class Meta:
        model = DatabaseServer
        fields = [*services.DATABASE_SERVER_FIELDS, *services.DATABASE_SERVER_SECRETS]


@admin.register(DatabaseServer)
class DatabaseServerAdmin(PolicyAdmin):
    form = DatabaseServerAdminForm
    list_display = ["name", "engine", "host", "port", "server", "accepts_new"]
    list_filter = ["engine", "accepts_new"]
    search_fields = ["name", "host"]
    list_select_related = ["server"]
    create_service = staticmethod(services.do_create_database_server)
    update_service = staticmethod(services.do_update_database_server)
    delete_service = staticmethod(services.do_delete_database_server)
    actions = ["check_connection"]

    def service_data(self, form) -> dict:
        data = dict(form.cleaned_data)
        if not data.get("admin_password"):
            data.pop("admin_password", None)
        return data

    @admin.action(description="Check the connection", permissions=["apply"])
    def check_connection(self, request, queryset):
        each_allowed(
            self, request, queryset, CHANGE, services.start_check_server, "Checking {n} server(s)."
        )


class _ReadOnly(PolicyAdmin):
    """Rows change through the portal or the API (passwords are shown once to the owner);
    the admin reads them and deletes through the service (an Operation on the server)."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields if f.name != "password"]

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(CustomerDatabase)
class CustomerDatabaseAdmin(_ReadOnly):
    list_display = ["name", "db_server", "owner", "status", "size_bytes", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["db_server", "owner"]
    delete_service = staticmethod(services.do_delete_database)


@admin.register(DatabaseUser)
class DatabaseUserAdmin(_ReadOnly):
    list_display = ["name", "db_server", "owner", "status", "password_changed_at"]
    list_filter = ["status"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["db_server", "owner"]
    exclude = ["password"]
    delete_service = staticmethod(services.do_delete_user)


@admin.register(DatabaseGrant)
class DatabaseGrantAdmin(_ReadOnly):
    list_display = ["database", "user", "privileges", "status"]
    list_filter = ["privileges", "status"]
    list_select_related = ["database", "user"]
    delete_service = staticmethod(services.do_revoke)
