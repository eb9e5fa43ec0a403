"""Live view of the server list (routed in panel/routing.py): a server's row is re-rendered
when the server changes, e.g. when an operation on it ends."""

from __future__ import annotations

from core.live import RowList
from servers.filters import ServerFilter
from servers.models import Server


class ServerListLive(RowList):
    model = Server
    row_template = "servers/partials/server_row.html"
    row_name = "row"
    refetch_new = True  # sorted by name: a new server makes the page re-fetch its list

    def row_id(self, key: str) -> str:
        return f"srv-{key}-row"

    def queryset(self):
        return super().queryset().select_related("owner")

    def filtered(self, qs):
        return ServerFilter(self.page, queryset=qs).qs
