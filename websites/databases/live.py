"""Live views of the database and database-user lists (routed in panel/routing.py): a row is
re-rendered when its status or size changes, e.g. when the operation that makes it ends."""

from __future__ import annotations

from core.live import RowList
from websites.databases.filters import DatabaseFilter, DatabaseUserFilter
from websites.databases.models import CustomerDatabase, DatabaseUser


class DatabaseListLive(RowList):
    model = CustomerDatabase
    row_template = "databases/partials/database_row.html"
    row_name = "row"
    refetch_new = True  # sorted by name: a new database makes the page re-fetch its list

    def row_id(self, key: str) -> str:
        return f"cdb-{key}-row"

    def queryset(self):
        return super().queryset().select_related("db_server", "owner")

    def filtered(self, qs):
        return DatabaseFilter(self.page, queryset=qs).qs


class DatabaseUserListLive(DatabaseListLive):
    model = DatabaseUser
    row_template = "databases/partials/user_row.html"

    def row_id(self, key: str) -> str:
        return f"cdbu-{key}-row"

    def filtered(self, qs):
        return DatabaseUserFilter(self.page, queryset=qs).qs
