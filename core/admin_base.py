"""Admin base classes: every change made in the admin is audited like any other."""

from django.contrib import admin
from django.forms.models import model_to_dict

from core import audit

AUDIT_SKIP = {"password", "digest", "key"}


def _plain(obj) -> dict:
    data = model_to_dict(obj)
    return {k: audit._jsonable(v) for k, v in data.items() if k not in AUDIT_SKIP}


class AuditedModelAdmin(admin.ModelAdmin):
    def save_model(self, request, obj, form, change):
        before = _plain(type(obj).objects.get(pk=obj.pk)) if change and obj.pk else {}
        super().save_model(request, obj, form, change)
        action = f"{obj._meta.model_name}.{'update' if change else 'create'}"
        audit.record(
            f"admin.{action}", obj, actor=request.user, changes=audit.diff(before, _plain(obj))
        )

    def delete_model(self, request, obj):
        audit.record(f"admin.{obj._meta.model_name}.delete", obj, actor=request.user)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
