from __future__ import annotations

from core.generic import PortalListView
from core.tables import Column, Table
from websites.filters import WebsiteFilter
from websites.models import Website

WEBSITE_TABLE = Table(
    columns=(
        Column("Domain"),
        Column("Status"),
        Column("Server", "hidden sm:table-cell"),
        Column("Owner", "hidden lg:table-cell"),
    ),
    row_template="websites/partials/website_row.html",
    empty_icon="globe",
    empty_text="No websites yet.",
    testid="websites-table",
)
SORTS = [
    ("", "Domain, A to Z"),
    ("-domain", "Domain, Z to A"),
    ("status", "Status"),
    ("-created", "Newest first"),
]


class WebsiteList(PortalListView):
    model = Website
    filterset_class = WebsiteFilter
    table = WEBSITE_TABLE
    template_name = "websites/website_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("server", "owner")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["sort_choices"] = SORTS
        if ctx["filterset"] and ctx["filterset"].form.changed_data:
            ctx["empty_text"] = "No website matches."
        return ctx
