"""Pagination that stays flat however big a table grows.

Keyset (cursor) pages: the next page starts after the last row shown, found through the index
that serves the list's ordering, never by counting and skipping rows (page 2,000 costs what
page 1 costs). Used by big portal lists (``KeysetListMixin``) and API lists
(``KeysetPagination``). Small API lists keep offsets (``core.api.pagination``); both refuse a
malformed or oversized ``limit`` with a 400. The admin counts at most ``CappedPaginator.CAP``
rows.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from uuid import UUID

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import Model, Q, QuerySet
from django.utils.functional import cached_property
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param


def ordering_of(qs: QuerySet) -> tuple[str, ...]:
    """The queryset's ordering, made total by ending with the primary key."""
    order = [str(o) for o in (qs.query.order_by or qs.model._meta.ordering or ["-pk"])]
    if not any(o.lstrip("-") in ("id", "pk") for o in order):
        order.append("-id" if order[-1].startswith("-") else "id")
    return tuple("-id" if o == "-pk" else "id" if o == "pk" else o for o in order)


def _jsonable(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _values(obj: Model, ordering: tuple[str, ...]) -> list:
    return [_jsonable(getattr(obj, obj._meta.get_field(o.lstrip("-")).attname)) for o in ordering]


def encode_cursor(ordering: tuple[str, ...], values: list, direction: str = "next") -> str:
    raw = json.dumps({"o": ",".join(ordering), "v": values, "d": direction})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, ordering: tuple[str, ...]) -> tuple[list, str] | None:
    """(values, direction) of a cursor made for this ordering; None for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        values, direction = data["v"], data["d"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        return None
    if data.get("o") != ",".join(ordering) or direction not in ("next", "prev"):
        return None
    if not isinstance(values, list) or len(values) != len(ordering):
        return None
    return values, direction


def cursor_for(obj: Model, ordering: tuple[str, ...]) -> str:
    """The cursor of the page that starts right after ``obj``."""
    return encode_cursor(ordering, _values(obj, ordering))


def _beyond(ordering: tuple[str, ...], values: list, backwards: bool) -> Q:
    """Rows after the row with ``values`` in ``ordering`` (before it, ``backwards``)."""
    q, equal = Q(), {}
    for name, value in zip(ordering, values, strict=True):
        descending = name.startswith("-") != backwards
        column = name.lstrip("-")
        q |= Q(**equal, **{f"{column}__{'lt' if descending else 'gt'}": value})
        equal[column] = value
    return q


@dataclass
class KeysetPage:
    object_list: list
    has_next: bool = False
    has_previous: bool = False
    next_cursor: str = ""
    previous_cursor: str = ""
    is_keyset: bool = field(default=True, init=False)

    def __iter__(self):
        return iter(self.object_list)

    def __len__(self) -> int:
        return len(self.object_list)


def keyset_page(qs: QuerySet, cursor: str | None, size: int) -> KeysetPage:
    ordering = ordering_of(qs)
    decoded = decode_cursor(cursor, ordering) if cursor else None
    if decoded is None:
        rows = list(qs.order_by(*ordering)[: size + 1])
        page = KeysetPage(rows[:size], has_next=len(rows) > size)
    elif decoded[1] == "next":
        rows = list(qs.filter(_beyond(ordering, decoded[0], False)).order_by(*ordering)[: size + 1])
        page = KeysetPage(rows[:size], has_next=len(rows) > size, has_previous=True)
    else:
        flipped = [o[1:] if o.startswith("-") else f"-{o}" for o in ordering]
        rows = list(qs.filter(_beyond(ordering, decoded[0], True)).order_by(*flipped)[: size + 1])
        page = KeysetPage(rows[:size][::-1], has_next=True, has_previous=len(rows) > size)
    if page.object_list:
        if page.has_next:
            page.next_cursor = encode_cursor(ordering, _values(page.object_list[-1], ordering))
        if page.has_previous:
            first = _values(page.object_list[0], ordering)
            page.previous_cursor = encode_cursor(ordering, first, "prev")
    return page


class KeysetListMixin:
    """For a portal ListView over a big table: ``?cursor=`` pages instead of ``?page=``."""

    def paginate_queryset(self, queryset, page_size):
        page = keyset_page(queryset, self.request.GET.get("cursor"), page_size)
        return None, page, page.object_list, page.has_next or page.has_previous


class KeysetPagination(BasePagination):
    """API pages by cursor: ``?limit=`` (at most PANEL_API_MAX_LIMIT) and the
    ``next``/``previous`` links."""

    page_size = 50

    @property
    def max_page_size(self) -> int:
        return settings.PANEL_API_MAX_LIMIT

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        if "offset" in request.query_params:
            from rest_framework.exceptions import ValidationError

            raise ValidationError(
                {"offset": "This list pages by cursor: follow its next and previous links."}
            )
        self.page = keyset_page(queryset, request.query_params.get("cursor"), self._size())
        return self.page.object_list

    def _size(self) -> int:
        from core.api.pagination import whole_number

        raw = self.request.query_params.get("limit")
        if raw is None:
            return self.page_size
        return whole_number(raw, "limit", minimum=1, maximum=self.max_page_size)

    def _link(self, cursor: str) -> str | None:
        if not cursor:
            return None
        url = self.request.build_absolute_uri()
        return replace_query_param(remove_query_param(url, "offset"), "cursor", cursor)

    def get_paginated_response(self, data):
        return Response(
            {
                "next": self._link(self.page.next_cursor),
                "previous": self._link(self.page.previous_cursor),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["results"],
            "properties": {"next": link, "previous": link, "results": schema},
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "cursor",
                "required": False,
                "in": "query",
                "description": "The page after (or before) the one that gave this cursor.",
                "schema": {"type": "string"},
            },
            {
                "name": "limit",
                "required": False,
                "in": "query",
                "description": "Rows per page.",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]


class CappedPaginator(Paginator):
    """For admin changelists of big tables: counts at most CAP rows, so neither the count
    nor the page links read the whole table."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP + 1].count()
