from django.contrib import admin

from core.admin_base import PolicyAdmin
from dns import services
from dns.models import Nameserver, NameserverGroup, PublishedRRSet, Record, Zone, ZoneTemplate


def _save_group(group=None, *, actor, data):
    return services.do_save_group(actor=actor, data=data, group=group)


def _save_nameserver(nameserver=None, *, actor, data):
    return services.do_save_nameserver(actor=actor, data=data, nameserver=nameserver)


def _save_template(template=None, *, actor, data):
    return services.do_save_template(actor=actor, data=data, template=template)


@admin.register(ZoneTemplate)
class ZoneTemplateAdmin(PolicyAdmin):
    list_display = ["name", "created_at"]
    fields = services.TEMPLATE_FIELDS
    create_service = staticmethod(_save_template)
    update_service = staticmethod(_save_template)


@admin.register(NameserverGroup)
class NameserverGroupAdmin(PolicyAdmin):
    list_display = ["name", "is_default", "created_at"]
    fields = services.GROUP_FIELDS
    create_service = staticmethod(_save_group)
    update_service = staticmethod(_save_group)


@admin.register(Nameserver)
class NameserverAdmin(PolicyAdmin):
    """Secrets are write-only: an empty field keeps the stored one."""

    list_display = ["hostname", "kind", "group", "host", "port", "primary"]
    list_filter = ["kind", "group"]
    list_select_related = ["group"]
    fields = [*services.NAMESERVER_FIELDS, *services.NAMESERVER_SECRETS]
    create_service = staticmethod(_save_nameserver)
    update_service = staticmethod(_save_nameserver)

    def get_form(self, request, obj=None, change=False, **kwargs):
        from django import forms

        form = super().get_form(request, obj, change, **kwargs)
        for name in services.NAMESERVER_SECRETS:
            if name in form.base_fields:
                form.base_fields[name].widget = forms.PasswordInput(render_value=False)
                form.base_fields[name].required = False
        return form


@admin.register(Zone)
class ZoneAdmin(PolicyAdmin):
    list_display = ["name", "owner", "group", "status", "serial", "created_at"]
    list_filter = ["status", "group"]
    search_fields = ["name", "owner__email"]
    list_select_related = ["owner", "group"]
    fields = [*services.ZONE_FIELDS, "serial", "status", "status_message", "published_at"]
    readonly_fields = ["serial", "status", "status_message", "published_at"]
    create_service = staticmethod(services.do_create_zone)
    update_service = staticmethod(services.do_update_zone)
    delete_service = staticmethod(services.do_delete_zone)

    def get_readonly_fields(self, request, obj=None):
        fixed = list(self.readonly_fields)
        return fixed + ["name"] if obj is not None else fixed


@admin.register(Record)
class RecordAdmin(PolicyAdmin):
    """Records change through the zone's services (each change publishes the zone)."""

    list_display = ["name", "type", "ttl", "content", "zone"]
    list_filter = ["type"]
    search_fields = ["zone__name", "name"]
    list_select_related = ["zone"]
    fields = ["zone", *services.RECORD_FIELDS]
    update_service = staticmethod(services.do_update_record)
    delete_service = staticmethod(services.do_delete_record)

    def service_data(self, form) -> dict:
        return {k: v for k, v in form.cleaned_data.items() if k in services.RECORD_FIELDS}

    def get_readonly_fields(self, request, obj=None):
        return ["zone"] if obj is not None else []


@admin.register(PublishedRRSet)
class PublishedRRSetAdmin(PolicyAdmin):
    """Read-only: what each nameserver was last sent and verified to serve (publishing keeps it)."""

    list_display = ["zone_name", "name", "type", "ttl", "nameserver"]
    list_filter = ["type"]
    search_fields = ["zone_name", "name"]
    list_select_related = ["nameserver"]
