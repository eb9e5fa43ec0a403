"""The admin's one base class: the policy decides, the services write.

``PolicyAdmin`` shows the rows ``restrict(user, "view")`` gives and allows add, change and
delete only when the concrete admin names the service that does it (``create_service``,
``update_service``, ``delete_service``) and the policy allows the action. Without a service
a model is read-only in the admin: every change with side effects (applies, audit entries,
secrets) happens in a service, never in ``ModelAdmin.save_model``.
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect

from core.fields import EncryptedTextField
from core.pagination import CappedPaginator
from core.policy import (
    ACCEPT_HOST_KEY,
    ADD,
    APPLY,
    CANCEL,
    CHANGE,
    DELETE,
    LIFT_LOCKOUT,
    RESET_2FA,
    VIEW,
    may,
    restrict,
)


class PolicyAdmin(admin.ModelAdmin):
    create_service = None  # called as create_service(actor=..., data=...)
    update_service = None  # called as update_service(obj, actor=..., data=...)
    delete_service = None  # called as delete_service(obj, actor=...)

    def get_queryset(self, request):
        return restrict(super().get_queryset(request), request.user, VIEW)

    def has_module_permission(self, request):
        return may(request.user, VIEW, self.model)

    def has_view_permission(self, request, obj=None):
        return may(request.user, VIEW, obj if obj is not None else self.model)

    def has_add_permission(self, request):
        return self.create_service is not None and may(request.user, ADD, self.model)

    def has_change_permission(self, request, obj=None):
        if self.update_service is None:
            return False
        return may(request.user, CHANGE, obj if obj is not None else self.model)

    def has_delete_permission(self, request, obj=None):
        if self.delete_service is None:
            return False
        return may(request.user, DELETE, obj if obj is not None else self.model)

    # Admin actions name a policy action in ``permissions=[...]``; Django asks these.
    def _may_action(self, request, action: str) -> bool:
        return may(request.user, action, self.model)

    def has_apply_permission(self, request):
        return self._may_action(request, APPLY)

    def has_accept_host_key_permission(self, request):
        return self._may_action(request, ACCEPT_HOST_KEY)

    def has_cancel_permission(self, request):
        return self._may_action(request, CANCEL)

    def has_lift_lockout_permission(self, request):
        return self._may_action(request, LIFT_LOCKOUT)

    def has_reset_2fa_permission(self, request):
        return self._may_action(request, RESET_2FA)

    def has_revoke_permission(self, request):
        return self._may_action(request, DELETE)

    def get_fields(self, request, obj=None):
        # A read-only page displays stored values: never those of encrypted secrets.
        fields = super().get_fields(request, obj)
        if self.has_change_permission(request, obj):
            return fields  # the form's secret widgets render empty
        secret = {
            f.name for f in self.model._meta.concrete_fields if isinstance(f, EncryptedTextField)
        }
        return [f for f in fields if f not in secret]

    def service_data(self, form) -> dict:
        return {name: form.cleaned_data[name] for name in form.cleaned_data}

    def save_model(self, request, obj, form, change):
        data = self.service_data(form)
        if change:
            fresh = type(obj)._default_manager.get(pk=obj.pk)  # the form wrote onto ``obj``
            saved = type(self).update_service(fresh, actor=request.user, data=data)
        else:
            saved = type(self).create_service(actor=request.user, data=data)
        obj.__dict__.update(saved.__dict__)  # the admin redirects to ``obj``'s page

    def delete_model(self, request, obj):
        type(self).delete_service(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # A service refusing the change (a rule, a lock-out guard) is a message, not a 500.
        try:
            with transaction.atomic():
                return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            with transaction.atomic():
                return super().delete_view(request, object_id, extra_context)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class PolicyInline(admin.TabularInline):
    """Inlines only show: a change to a related row goes through its own service."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def allowed(request, queryset, action: str):
    """For admin actions: only the selected rows the policy allows ``action`` on."""
    return restrict(queryset, request.user, action)


def each_allowed(model_admin, request, queryset, action: str, service, done: str) -> None:
    """An admin action: ``service(obj, actor=...)`` on every selected row the policy allows,
    then one message, e.g. ``done="Apply queued for {n} server(s)."``."""
    rows = list(allowed(request, queryset, action))
    for row in rows:
        service(row, actor=request.user)
    model_admin.message_user(request, done.format(n=len(rows)), messages.SUCCESS)


class BigTable:
    """Changelist settings for tables that grow without bound: no date hierarchy (its
    DISTINCT over the dates reads the whole table), no full count, a capped count, and a
    text search over the newest rows only (a substring search cannot use an index)."""

    paginator = CappedPaginator
    show_full_result_count = False
    search_window = 10_000
    search_help_text = (
        "Searches the newest 10,000 entries; a full UUID or id number finds any entry."
    )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return super().get_search_results(request, queryset, search_term)
        exact = _exact_lookup(queryset.model, term)
        if exact is not None:
            return queryset.filter(**exact), False
        newest = queryset.model._default_manager.order_by("-pk").values_list("pk", flat=True)
        floor = (newest.first() or 0) - self.search_window
        return super().get_search_results(request, queryset.filter(pk__gt=floor), search_term)


def _exact_lookup(model, term: str) -> dict | None:
    """An indexed lookup for a term that is a whole id or UUID."""
    if term.isdigit():
        return {"pk": int(term)}
    try:
        value = uuid.UUID(term)
    except ValueError:
        return None
    return {"uuid": value} if any(f.name == "uuid" for f in model._meta.fields) else None


def cached_values_filter(field: str, title: str):
    """A list filter offering the values found in ``field``, read at most every 10 minutes
    (Django's own asks the database for the distinct values on every page)."""

    class ValuesFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            model = model_admin.model
            key = f"admin-values:{model._meta.label}:{field}"
            values = cache.get_or_set(
                key,
                lambda: list(
                    model.objects.order_by(field).values_list(field, flat=True).distinct()
                ),
                600,
            )
            return [(value, value) for value in values]

        def queryset(self, request, queryset):
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    ValuesFilter.title = title
    return ValuesFilter
