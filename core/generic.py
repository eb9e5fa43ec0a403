"""The portal's generic views. A concrete view names a model, a template, maybe a filter, a
form and the service functions; querysets always come from the policy (core/policy.py), so an
object out of reach is absent and answers 404.

- ``PortalListView``: list with a FilterSet and a table spec; htmx asks get only the table.
- ``PortalDetailView``: the object and what the user may do with it (``object.may``), in one
  query.
- ``PortalEditView``: create or edit through a service; htmx field validation; a toast.
- ``PortalDeleteView``: GET asks for confirmation, POST deletes through a service.
- ``PortalActionView``: POST runs one service action (usually starting an Operation).

Services raise ``ValidationError`` for bad input; the views put it on the form or in a toast.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View
from django.views.generic import DetailView, ListView

from core.policy import (
    ADD,
    CHANGE,
    DELETE,
    VIEW,
    annotate_permissions,
    collect_permissions,
    may,
    restrict,
)


def is_htmx(request) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted


def redirect_htmx_aware(request, url: str):
    """htmx follows ``HX-Redirect`` with a full page load; plain forms get a 302."""
    if is_htmx(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def get_for_user(model, user, action: str = CHANGE, **lookup):
    """One object the user may ``action``, or 404."""
    return get_object_or_404(restrict(model, user, action), **lookup)


def form_errors_from(form, exc: ValidationError) -> None:
    """Put a service's ValidationError onto a bound form: per field where it can, else top."""
    if hasattr(exc, "error_dict"):
        for field, errs in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errs)
    else:
        form.add_error(None, exc.messages)


class PortalListView(ListView):
    filterset_class = None
    partial_template_name: str | None = None
    table = None  # a core.tables.Table
    paginate_by = 25
    action = VIEW

    def get_queryset(self):
        qs = self.optimise(restrict(self.model, self.request.user, self.action))
        if self.filterset_class is not None:
            self.filterset = self.filterset_class(
                self.request.GET, queryset=qs, request=self.request
            )
            qs = self.filterset.qs
        return qs

    def optimise(self, qs):
        return qs

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["filterset"] = getattr(self, "filterset", None)
        ctx["table"] = self.table
        ctx["may_add"] = may(self.request.user, ADD, self.model)
        ctx["query"] = self.request.GET.copy()
        ctx["query"].pop("page", None)
        return ctx

    def get_template_names(self):
        if is_htmx(self.request) and self.partial_template_name:
            return [self.partial_template_name]
        return super().get_template_names()


class PortalDetailView(DetailView):
    """``object.may`` holds the ``actions`` the user may perform, fetched with the object."""

    slug_field = "uuid"
    slug_url_kwarg = "uuid"
    action = VIEW
    actions: tuple[str, ...] = (CHANGE, DELETE)

    def get_queryset(self):
        qs = self.optimise(restrict(self.model, self.request.user, self.action))
        return annotate_permissions(qs, self.request.user, self.actions)

    def optimise(self, qs):
        return qs

    def get_object(self, queryset=None):
        obj = super().get_object(queryset)
        collect_permissions(obj, self.actions)
        return obj


class _ServiceFormMixin:
    """Shared by edit views: the form, its kwargs, and htmx-aware answers."""

    form_class = None
    fields_template_name: str | None = None  # the form's fields, for htmx validation
    template_name = ""

    def form_kwargs(self) -> dict:
        return {}

    def render_form(self, request, form, obj, status: int = 200):
        validating = request.POST.get("_validate") == "1"
        template = (
            self.fields_template_name
            if validating and is_htmx(request) and self.fields_template_name
            else self.template_name
        )
        ctx = {"form": form, "object": obj, self.model._meta.model_name: obj}
        return render(request, template, ctx, status=status)


class PortalEditView(_ServiceFormMixin, View):
    """Create (no ``uuid`` in the URL) or edit an object through its service functions.

    A POST with ``_validate=1`` only validates (htmx re-renders the fields); otherwise the
    service saves and audits, a toast says so, and the browser goes to ``success_url``.
    """

    model = None
    create_service = None  # called as create_service(actor=..., data=...)
    update_service = None  # called as update_service(obj, actor=..., data=...)
    created_message = "{object} added."
    saved_message = "{object} saved."

    def get_object(self, request, uuid):
        if uuid is None:
            if not may(request.user, ADD, self.model):
                raise Http404
            return None
        return get_for_user(self.model, request.user, CHANGE, uuid=uuid)

    def success_url(self, obj) -> str:
        return obj.get_absolute_url()

    def service_data(self, form) -> dict:
        return dict(form.cleaned_data)

    def get(self, request, uuid=None):
        obj = self.get_object(request, uuid)
        form = self.form_class(instance=obj, **self.form_kwargs())
        return self.render_form(request, form, obj)

    def post(self, request, uuid=None):
        obj = self.get_object(request, uuid)
        form = self.form_class(
            request.POST, request.FILES or None, instance=obj, **self.form_kwargs()
        )
        validating = request.POST.get("_validate") == "1"
        if form.is_valid() and not validating:
            try:
                if obj is None:
                    saved = type(self).create_service(
                        actor=request.user, data=self.service_data(form)
                    )
                    messages.success(request, self.created_message.format(object=saved))
                else:
                    fresh = type(obj).objects.get(pk=obj.pk)  # the form wrote onto ``obj``
                    saved = type(self).update_service(
                        fresh, actor=request.user, data=self.service_data(form)
                    )
                    messages.success(request, self.saved_message.format(object=saved))
                return redirect_htmx_aware(request, self.success_url(saved))
            except ValidationError as exc:
                form_errors_from(form, exc)
            except PermissionDenied as exc:
                raise Http404 from exc
        status = 400 if form.errors and not validating else 200
        return self.render_form(request, form, obj, status)


class PortalDeleteView(View):
    """GET shows a confirmation; POST deletes through ``delete_service`` and says so."""

    model = None
    delete_service = None  # called as delete_service(obj, actor=...)
    template_name = "components/confirm_delete.html"
    success_url = "/"

    def get_object(self, request, uuid):
        return get_for_user(self.model, request.user, DELETE, uuid=uuid)

    def get(self, request, uuid):
        obj = self.get_object(request, uuid)
        return render(request, self.template_name, {"object": obj})

    def post(self, request, uuid):
        obj = self.get_object(request, uuid)
        try:
            type(self).delete_service(obj, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, obj.get_absolute_url())
        messages.success(request, f"{obj} deleted.")
        return redirect_htmx_aware(request, str(self.success_url))


class PortalFormActionView(View):
    """POST a small form about an object the user may ``action``: ``service(obj,
    actor=..., data=form.cleaned_data)``. Started an Operation: the browser goes to it;
    otherwise back to the object with ``message``. Form or service errors go back to the
    object as messages; a PermissionDenied from the service is a 404."""

    model = None
    action = CHANGE
    form_class = None
    service = None
    message = "Done."
    http_method_names = ["post"]

    def form_kwargs(self, obj) -> dict:
        return {}

    def post(self, request, uuid):
        obj = get_for_user(self.model, request.user, self.action, uuid=uuid)
        form = self.form_class(request.POST, **self.form_kwargs(obj))
        if not form.is_valid():
            messages.error(request, " ".join(m for ms in form.errors.values() for m in ms))
            return redirect_htmx_aware(request, obj.get_absolute_url())
        try:
            result = type(self).service(obj, actor=request.user, data=dict(form.cleaned_data))
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, obj.get_absolute_url())
        except PermissionDenied as exc:
            raise Http404 from exc
        from core.models import Operation

        if isinstance(result, Operation):
            return redirect_htmx_aware(request, result.get_absolute_url())
        messages.success(request, self.message)
        return redirect_htmx_aware(request, obj.get_absolute_url())


class PortalActionView(View):
    """POST runs ``service(obj, actor=...)`` on an object the user may ``action``.

    When the service starts an Operation, the browser goes to its page; otherwise back to
    the object with ``message``.
    """

    model = None
    action = CHANGE
    service = None
    message = "Done."
    http_method_names = ["post"]

    def post(self, request, uuid):
        obj = get_for_user(self.model, request.user, self.action, uuid=uuid)
        try:
            result = type(self).service(obj, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, obj.get_absolute_url())
        from core.models import Operation

        if isinstance(result, Operation):
            return redirect_htmx_aware(request, result.get_absolute_url())
        messages.success(request, self.message)
        return redirect_htmx_aware(request, obj.get_absolute_url())
