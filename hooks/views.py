"""Webhook pages, mounted at /hooks/: the list, a webhook's settings with its deliveries,
delete, and "Send test"."""

from __future__ import annotations

from django.shortcuts import render
from django.urls import reverse_lazy

from core.generic import PortalActionView, PortalDeleteView, PortalEditView, PortalListView
from core.tables import Column, Table
from hooks import services
from hooks.filters import WebhookFilter
from hooks.forms import WebhookForm
from hooks.models import Webhook

WEBHOOK_TABLE = Table(
    columns=(
        Column("Webhook"),
        Column("Events", "hidden md:table-cell"),
        Column("State", "hidden sm:table-cell"),
    ),
    row_template="hooks/partials/webhook_row.html",
    empty_icon="upload",
    empty_text="No webhooks yet.",
    testid="webhooks-table",
)


class WebhookList(PortalListView):
    model = Webhook
    filterset_class = WebhookFilter
    table = WEBHOOK_TABLE
    template_name = "hooks/webhook_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("owner", "token")


class WebhookEdit(PortalEditView):
    """Create, or (``uuid``) the webhook's page: its settings and its last deliveries."""

    model = Webhook
    form_class = WebhookForm
    template_name = "hooks/webhook_form.html"
    create_service = staticmethod(services.do_create_webhook)
    update_service = staticmethod(services.do_update_webhook)
    created_message = "Webhook {object} added."

    def form_kwargs(self) -> dict:
        return {"actor": self.request.user}

    def render_form(self, request, form, obj, status: int = 200):
        deliveries = (
            obj.deliveries.select_related("event").order_by("-created_at", "-id")[:25]
            if obj
            else []
        )
        ctx = {"form": form, "object": obj, "deliveries": deliveries}
        return render(request, self.template_name, ctx, status=status)


class WebhookDelete(PortalDeleteView):
    model = Webhook
    delete_service = staticmethod(services.do_delete_webhook)
    success_url = reverse_lazy("hooks")


class WebhookTest(PortalActionView):
    model = Webhook
    service = staticmethod(services.do_send_test)
    message = "Test event sent; its delivery is listed below."
