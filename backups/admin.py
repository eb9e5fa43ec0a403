from django import forms
from django.contrib import admin

from backups import services
from backups.models import BackupJob, BackupRun, BackupTarget, SnapshotListing, TestRestore
from core.admin_base import PolicyAdmin, each_allowed
from core.forms import secret_field
from core.policy import CHANGE


class BackupTargetAdminForm(forms.ModelForm):
    password = secret_field(help_text="Stored encrypted. Blank: generated (new), kept (edit).")
    sftp_private_key = secret_field(
        textarea=True, help_text="Stored encrypted. Blank: a new key pair (new), kept (edit)."
    )
    s3_access_key = secret_field(help_text="S3: stored encrypted. Blank keeps it (edit).")
    s3_secret_key = secret_field(help_text="S3: stored encrypted. Blank keeps it (edit).")

    class Meta:
        model = BackupTarget
        fields = [*services.TARGET_FIELDS, *services.TARGET_SECRETS]


@admin.register(BackupTarget)
class BackupTargetAdmin(PolicyAdmin):
    form = BackupTargetAdminForm
    list_display = ["name", "kind", "server", "path", "status", "free_bytes", "checked_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "path"]
    list_select_related = ["server"]
    create_service = staticmethod(services.do_create_target)
    update_service = staticmethod(services.do_update_target)
    delete_service = staticmethod(services.do_delete_target)
    actions = ["check_target"]

    def service_data(self, form) -> dict:
        data = dict(form.cleaned_data)
        for name in services.TARGET_SECRETS:
            if not data.get(name):
                data.pop(name, None)
        return data

    @admin.action(description="Check (initialise) the repository", permissions=["apply"])
    def check_target(self, request, queryset):
        each_allowed(
            self, request, queryset, CHANGE, services.start_check_target, "Checking {n} target(s)."
        )


@admin.register(BackupJob)
class BackupJobAdmin(PolicyAdmin):
    list_display = ["account", "target", "enabled", "last_status", "last_success_at"]
    list_filter = ["enabled", "last_status"]
    search_fields = ["account__name"]
    list_select_related = ["account", "account__server", "target"]
    fields = services.JOB_FIELDS
    create_service = staticmethod(services.do_create_job)
    update_service = staticmethod(services.do_update_job)
    delete_service = staticmethod(services.do_delete_job)


@admin.register(BackupRun)
class BackupRunAdmin(PolicyAdmin):
    list_display = ["job", "state", "started_at", "files", "size_bytes", "bytes_added", "forgotten"]
    list_filter = ["state", "forgotten"]
    list_select_related = ["job", "job__account", "job__target"]


@admin.register(TestRestore)
class TestRestoreAdmin(PolicyAdmin):
    list_display = ["job", "state", "started_at", "files_checked", "databases_loaded"]
    list_filter = ["state"]
    list_select_related = ["job", "job__account", "job__target"]


@admin.register(SnapshotListing)
class SnapshotListingAdmin(PolicyAdmin):
    """Read-only: the snapshot browser's folder listings (made by Operations)."""

    list_display = ["run", "path", "truncated", "listed_at"]
    list_select_related = ["run", "run__job", "run__job__account"]
    readonly_fields = ["run", "path", "entries", "truncated", "listed_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
