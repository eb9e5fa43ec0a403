"""The Django admin as the panel's staff console: same brand, theme and sign-in as the portal.

Every changelist shows 50 rows: the admin renders each row through form widgets, and 100 of
them cost more than the rest of the page together.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache

LIST_PER_PAGE = 50


class PanelAdminSite(admin.AdminSite):
    site_header = "Unified Hosting Panel"
    site_title = "Unified Hosting Panel admin"
    index_title = "Staff console"

    @method_decorator(never_cache)
    @login_not_required
    def login(self, request, extra_context=None):
        """Staff sign in through the portal (its throttle and second factor). Anyone else
        who is signed in gets a clear answer, not a redirect back here (a loop)."""
        if request.user.is_authenticated and not self.has_permission(request):
            return TemplateResponse(request, "admin/staff_only.html", status=403)
        target = request.GET.get("next") or reverse("admin:index")
        return redirect(f"{reverse('account_login')}?{urlencode({'next': target})}")

    def register(self, model_or_iterable, admin_class=None, **options):
        super().register(model_or_iterable, admin_class, **options)
        models = [model_or_iterable] if isinstance(model_or_iterable, type) else model_or_iterable
        for model in models:
            model_admin = self._registry.get(model)  # swapped models are skipped
            if model_admin and type(model_admin).list_per_page == admin.ModelAdmin.list_per_page:
                model_admin.list_per_page = LIST_PER_PAGE
