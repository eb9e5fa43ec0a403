from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts.models import ApiToken, LoginAttempt, User
from core.admin import BigTable, cached_values_filter
from core.admin_base import AuditedModelAdmin, ReadOnlyAdmin


class PanelUserCreationForm(UserCreationForm):
    class Meta:
        model = User
        fields = ["email", "role", "reseller"]


class PanelUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(AuditedModelAdmin, BaseUserAdmin):
    form = PanelUserChangeForm
    add_form = PanelUserCreationForm
    list_display = ["email", "name", "role", "reseller", "company", "is_active", "date_joined"]
    list_filter = ["role", "is_active"]
    search_fields = ["email", "name", "company", "uuid"]
    ordering = ["email"]
    list_select_related = ["reseller"]
    readonly_fields = ["uuid", "last_login", "date_joined"]
    autocomplete_fields = ["reseller"]
    filter_horizontal = ["groups", "user_permissions"]
    fieldsets = [
        (None, {"fields": ["uuid", "email", "password"]}),
        ("Profile", {"fields": ["name", "company", "timezone", "avatar"]}),
        ("Role", {"fields": ["role", "reseller", "is_active", "groups", "user_permissions"]}),
        ("Security", {"fields": ["session_timeout_minutes", "ip_allowlist"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (
            None,
            {
                "classes": ["wide"],
                "fields": ["email", "role", "reseller", "password1", "password2"],
            },
        )
    ]


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedModelAdmin):
    list_display = ["name", "user", "prefix", "scope", "status", "expires_at", "last_used_at"]
    list_filter = ["scope"]
    search_fields = ["name", "prefix", "user__email"]
    list_select_related = ["user"]
    readonly_fields = ["uuid", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    fields = [
        "uuid",
        "user",
        "name",
        "scope",
        "prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]

    def has_add_permission(self, request):
        return False  # created in the portal or API, where the secret can be shown once


@admin.register(LoginAttempt)
class LoginAttemptAdmin(BigTable, ReadOnlyAdmin):
    list_display = ["created_at", "email", "ip", "success", "reason", "user_agent"]
    list_filter = ["success", cached_values_filter("reason", "reason")]
    search_fields = ["email", "ip"]

    def has_delete_permission(self, request, obj=None):
        # Deleting failures lifts a lock-out; support may do this.
        return request.user.has_perm("accounts.delete_loginattempt")
