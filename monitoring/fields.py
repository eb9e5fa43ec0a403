"""A JSON field stored as PostgreSQL's ``json`` rather than ``jsonb``.

``json`` keeps the text as written (checked, not converted): writing it costs the server a
fraction of ``jsonb``'s parse into its binary form, and reading it back as text costs
nothing. For values written every round and never searched by key (``jsonb``'s operators
and indexes are what it gives up). Elsewhere (SQLite) it is Django's JSONField as it is.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class JSONTextField(models.JSONField):
    def db_type(self, connection) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_db_prep_value(self, value, connection, prepared: bool = False) -> Any:
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        from psycopg.types.json import Json

        from core.bulk import dumps

        if not prepared:
            value = self.get_prep_value(value)
        if self.encoder is not None:
            return Json(value, dumps=lambda v: self.encoder().encode(v))
        return Json(value, dumps=dumps)

    def from_db_value(self, value, expression, connection) -> Any:
        # psycopg decodes ``json`` columns itself (Django's text loader is for jsonb only).
        if value is not None and not isinstance(value, str | bytes):
            return value
        return super().from_db_value(value, expression, connection)
