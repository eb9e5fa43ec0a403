from contextvars import ContextVar

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm

from accounts import services
from accounts.models import ApiToken, LoginAttempt, User
from core.admin_base import BigTable, PolicyAdmin, allowed, cached_values_filter, each_allowed
from core.policy import DELETE, LIFT_LOCKOUT, RESET_2FA


class UserCreateForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["email", "role", "reseller"]


class UserChangeForm(forms.ModelForm):
    class Meta:
        model = User
        fields = services.USER_FIELDS


# Who is using the admin's password page: its form is built without the request.
_password_actor: ContextVar = ContextVar("password_actor", default=None)


class PasswordForm(AdminPasswordChangeForm):
    """The admin's "change password" page, saved (and audited) through the service."""

    def save(self, commit=True):
        password = self.cleaned_data["password1"]
        actor = _password_actor.get()
        services.do_set_password(self.user, actor=actor, password=password, via="admin")
        return self.user


def _create_user(*, actor, data):
    return services.do_create_user(actor=actor, data=data)


@admin.register(User)
class UserAdmin(PolicyAdmin, BaseUserAdmin):
    form = UserChangeForm
    add_form = UserCreateForm
    change_password_form = PasswordForm
    create_service = _create_user
    update_service = services.do_update_user
    list_display = ["email", "name", "role", "reseller", "company", "is_active", "date_joined"]
    list_filter = ["role", "is_active"]
    search_fields = ["email", "name", "company", "uuid"]
    ordering = ["email"]
    list_select_related = ["reseller"]
    # A new email address is verified before use: users change it on their email page.
    readonly_fields = ["uuid", "email", "last_login", "date_joined"]
    autocomplete_fields = ["reseller"]
    filter_horizontal: list[str] = []
    actions = ["reset_2fa"]
    fieldsets = [
        (None, {"fields": ["uuid", "email", "password"]}),
        ("Profile", {"fields": ["name", "company", "timezone"]}),
        ("Role", {"fields": ["role", "reseller", "is_active"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "role", "reseller"]})]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def user_change_password(self, request, id, form_url=""):
        token = _password_actor.set(request.user)
        try:
            return super().user_change_password(request, id, form_url)
        finally:
            _password_actor.reset(token)

    @admin.action(description="Reset two-factor authentication", permissions=["reset_2fa"])
    def reset_2fa(self, request, queryset):
        each_allowed(
            self,
            request,
            queryset,
            RESET_2FA,
            services.do_reset_2fa,
            "Two-factor reset for {n} user(s).",
        )


@admin.register(ApiToken)
class ApiTokenAdmin(PolicyAdmin):
    """Metadata only (the secret is stored as a digest, never shown); revoke by action."""

    list_display = ["name", "user", "prefix", "scope", "status", "expires_at", "last_used_at"]
    list_filter = ["scope"]
    search_fields = ["name", "prefix", "user__email"]
    list_select_related = ["user"]
    exclude = ["digest"]
    actions = ["revoke"]

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset):
        each_allowed(
            self, request, queryset, DELETE, services.do_revoke_token, "{n} token(s) revoked."
        )


@admin.register(LoginAttempt)
class LoginAttemptAdmin(BigTable, PolicyAdmin):
    list_display = ["created_at", "email", "ip", "success", "reason", "lifted_at", "user_agent"]
    list_filter = ["success", cached_values_filter("reason", "reason")]
    search_fields = ["email", "ip"]
    actions = ["lift_lockout"]

    @admin.action(
        description="Lift the lock-out (failures stop counting)", permissions=["lift_lockout"]
    )
    def lift_lockout(self, request, queryset):
        lifted = services.do_lift_lockout(
            allowed(request, queryset, LIFT_LOCKOUT), actor=request.user
        )
        self.message_user(request, f"{lifted} failed attempt(s) no longer count.", messages.SUCCESS)
