"""The portal's generic views. Concrete views name a model, a template and maybe a filter.

Every queryset comes from ``Model.objects.for_user(user, action)``, so an object out of reach
is simply absent and answers 404. An htmx request for a list gets only the table partial.
"""

from __future__ import annotations

from django.views.generic import DetailView, ListView

from core.policy import CHANGE, VIEW


class PortalListView(ListView):
    filterset_class = None
    partial_template_name: str | None = None
    paginate_by = 25
    action = VIEW

    def get_queryset(self):
        qs = self.model.objects.for_user(self.request.user, self.action)
        qs = self.optimise(qs)
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
        ctx["query"] = self.request.GET.copy()
        ctx["query"].pop("page", None)
        return ctx

    def get_template_names(self):
        htmx = getattr(self.request, "htmx", None)
        if htmx and not htmx.boosted and self.partial_template_name:
            return [self.partial_template_name]
        return super().get_template_names()


class PortalDetailView(DetailView):
    slug_field = "uuid"
    slug_url_kwarg = "uuid"
    action = VIEW

    def get_queryset(self):
        return self.model.objects.for_user(self.request.user, self.action)


def get_for_user(model, user, action: str = CHANGE, **lookup):
    """One object the user may act on, or 404."""
    from django.shortcuts import get_object_or_404

    return get_object_or_404(model.objects.for_user(user, action), **lookup)


def form_errors_from(form, exc) -> None:
    """Put a service's ValidationError onto a bound form: per field where it can, else top."""
    if hasattr(exc, "error_dict"):
        for field, errs in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errs)
    else:
        form.add_error(None, exc.messages)
