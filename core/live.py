"""What a page shows live: the rows its socket re-renders when a ``LiveEvent`` names them.

A live page names a ``LiveView`` subclass in ``panel/routing.py``; ``core.consumers`` does
the rest (authentication, groups, replay from the page's sequence, batching). Rows are
always rendered from the database through ``restrict``, so the groups only route events and
never decide what a user may see. See docs/live-events.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Model, Q, QuerySet
from django.http import QueryDict
from django.template.loader import render_to_string

from core import events
from core.models import LiveEvent
from core.policy import restrict, stream_scope

REPLAY_MAX = 200  # more events than this since the page's sequence: the page re-fetches


@dataclass
class Fragment:
    """One element to put on the page: replaces the element with this id; if the page has
    none, it is put first into the element ``insert`` names, or the page re-fetches its list
    when ``refetch`` (a new row of a list sorted otherwise than newest first), or it is
    dropped."""

    id: str
    html: str
    insert: str = ""
    refetch: bool = False


def by_keys(qs: QuerySet, keys) -> QuerySet:
    """Rows whose event key (uuid hex or pk) is among ``keys``."""
    uuids, pks = [], []
    for key in keys:
        try:
            uuids.append(uuid.UUID(key))
        except ValueError:
            if key.isdigit():
                pks.append(int(key))
    if any(f.name == "uuid" for f in qs.model._meta.fields):
        return qs.filter(uuid__in=uuids)
    return qs.filter(pk__in=pks)


class LiveView:
    """One kind of live page. ``key`` is set for a page about one object (a detail page),
    ``page`` holds the query string the page was rendered with (its filters)."""

    topics: tuple[str, ...] = ()
    log_stream = False  # operation pages also stream that operation's log lines

    def __init__(self, user, key: str = "", page: QueryDict | None = None) -> None:
        self.user = user
        self.key = key
        self.page = page if page is not None else QueryDict()

    def allowed(self) -> bool:
        """Runs once on connect (in a thread): False closes the socket as 404."""
        return True

    def groups(self) -> list[str]:
        if self.key:
            return [events.group_key(topic, self.key) for topic in self.topics]
        return [g for topic in self.topics for g in events.audience_groups(topic, self.user)]

    def replay_filter(self) -> Q:
        q = Q(topic__in=self.topics)
        return q & Q(key=self.key) if self.key else q & stream_scope(self.user)

    def events_since(self, since: int) -> list[LiveEvent] | None:
        """Events after ``since`` this page hears about, or None when too many were missed
        (or already pruned) and the page should re-fetch instead."""
        if since:  # 0: rendered before any event existed, so every event is news
            oldest = LiveEvent.objects.order_by("id").values_list("id", flat=True).first()
            if oldest is not None and since < oldest - 1:
                return None  # pruned since the page was rendered
        rows = list(
            LiveEvent.objects.filter(self.replay_filter(), id__gt=since).order_by("id")[
                : REPLAY_MAX + 1
            ]
        )
        return None if len(rows) > REPLAY_MAX else rows

    def fragments(self, keys: dict[str, set[str]]) -> tuple[list[Fragment], list[str]]:
        """For changed keys per topic: fragments to put on the page and element ids to
        remove (rows gone or out of reach). Runs in a thread."""
        raise NotImplementedError


class RowList(LiveView):
    """A list page: each changed row is rendered alone with the page's row template. A new
    row that matches the page's filters goes on top of the first page."""

    model: type[Model]
    row_template = ""
    row_name = "obj"  # the row template's variable
    insert_into = ""  # id of the rows' container; empty: existing rows update, none appear
    refetch_new = False  # a new matching row makes the page re-fetch (lists not newest first)
    sort_params = ("sort", "ordering")

    @property
    def topics(self) -> tuple[str, ...]:  # type: ignore[override]
        return (events.topic_of(self.model),)

    def row_id(self, key: str) -> str:
        raise NotImplementedError

    def queryset(self) -> QuerySet:
        return restrict(self.model, self.user)

    def filtered(self, qs: QuerySet) -> QuerySet:
        """The page's own filters (override when the list has some)."""
        return qs

    def first_page_in_default_order(self) -> bool:
        names = ("page", "cursor", *self.sort_params)
        return not any(self.page.get(name) for name in names)

    def context(self, obj) -> dict:
        return {self.row_name: obj, "user": self.user}

    def fragments(self, keys):
        changed = keys.get(self.topics[0], set())
        if not changed:
            return [], []
        rows = {events.key_of(o): o for o in by_keys(self.queryset(), changed)}
        matching: set[str] = set()
        inserting = bool(self.insert_into) and self.first_page_in_default_order()
        if inserting or self.refetch_new:
            hits = by_keys(self.filtered(self.queryset()), changed).select_related(None)
            field = "uuid" if self._has_uuid() else "pk"
            matching = {_key(v) for v in hits.values_list(field, flat=True)}
        out = [
            Fragment(
                self.row_id(key),
                render_to_string(self.row_template, self.context(obj)),
                self.insert_into if inserting and key in matching else "",
                refetch=self.refetch_new and key in matching,
            )
            for key, obj in rows.items()
        ]
        return out, [self.row_id(key) for key in changed - rows.keys()]

    def _has_uuid(self) -> bool:
        return any(f.name == "uuid" for f in self.model._meta.fields)


def _key(value) -> str:
    return value.hex if isinstance(value, uuid.UUID) else str(value)


class LivePageMixin:
    """For a view whose page goes live: reads the sequence before the view reads its data,
    so any change after what the page shows has a higher sequence and is replayed."""

    live_since = 0

    def get(self, request, *args, **kwargs):
        self.live_since = events.current_seq()
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["live_since"] = self.live_since
        return ctx
