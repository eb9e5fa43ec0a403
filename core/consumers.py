"""The one websocket consumer behind every live page (and the JSON event stream of the API).

On connect it joins the page's groups, then replays the events after the sequence the page
was rendered with (``?since=``) and the log lines after ``?line=``, so nothing that happened
between rendering and connecting is lost; duplicates are dropped by sequence number. Later
events are batched for a moment and each changed row is rendered once.

Browsers get JSON instructions that static/js/live.js applies; API clients add
``?format=json`` and get the events themselves.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import QueryDict

from accounts.sessions import may_connect
from core import events
from core.live import LiveView
from core.models import OperationLogLine
from core.relay import relay
from core.templatetags.panel_tags import log_line

BATCH_DELAY = 0.05  # gather a burst of events into one query and one message
LOG_BATCH = 1000
SEEN_MAX = 5000


def _int(values: list[str] | None) -> int | None:
    value = (values or [""])[0]
    return int(value) if value.isdigit() else None


class LiveConsumer(AsyncWebsocketConsumer):
    view: type[LiveView] = LiveView

    def __init__(self, *args, view: type[LiveView] | None = None, **kwargs) -> None:
        """``LiveConsumer.as_asgi(view=...)``: Channels passes it here and drops it otherwise."""
        super().__init__(*args, **kwargs)
        if view is not None:
            self.view = view

    async def connect(self):
        self.joined: list[str] = []
        self.relayed = False
        self.pending: dict[str, set[str]] = {}
        self.pending_seq = 0
        self.flusher: asyncio.Task | None = None
        self.seen: deque[int] = deque(maxlen=SEEN_MAX)
        self.lines_wanted = False
        self.line_reader: asyncio.Task | None = None
        user = self.scope.get("user")
        client = self.scope.get("client") or (None, None)
        if not await database_sync_to_async(may_connect)(
            user, self.scope.get("session") or {}, client[0]
        ):
            await self.close(code=4401)
            return
        query = parse_qs((self.scope.get("query_string") or b"").decode())
        self.as_json = query.get("format") == ["json"]
        key = self.scope["url_route"]["kwargs"].get("key")
        page = QueryDict((query.get("page") or [""])[0])
        self.live = self.view(user, key.hex if key else "", page)
        if not await database_sync_to_async(self.live.allowed)():
            await self.close(code=4404)
            return
        self.last_line = _int(query.get("line")) or 0
        for group in self.live.groups():
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        if self.live.log_stream:
            group = events.group_log(self.live.key)
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.accept()
        if not events.layer_is_shared():
            await relay.subscribe()  # before the replay reads, so nothing falls between
            self.relayed = True
        await self.replay(_int(query.get("since")), "line" in query)

    async def disconnect(self, code):
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "relayed", False):
            relay.unsubscribe()
        for task in (getattr(self, "flusher", None), getattr(self, "line_reader", None)):
            if task is not None:
                task.cancel()

    async def replay(self, since: int | None, with_lines: bool) -> None:
        missed = []
        if since is not None:
            missed = await database_sync_to_async(self.live.events_since)(since)
            if missed is None:
                await self.send_json({"type": "reload"} if self.as_json else {"reload": True})
                return
        self.seen.extend(event.pk for event in missed)
        lines = []
        if self.live.log_stream and (with_lines or since is not None):
            lines = await database_sync_to_async(self._lines_after)(self.last_line)
        if self.as_json:
            for event in missed:
                await self.send_json(_public(events.event_message(event)))
            await self.send_lines(lines)
            await self.send_json({"type": "ready"})
            if len(lines) == LOG_BATCH:
                self._want_lines()
            return
        message = await self.render({e.pk: (e.topic, e.key) for e in missed})
        if lines:
            message["append"] = [_line_fragment(line) for line in lines]
            message["line"] = self.last_line
        message["ready"] = True
        await self.send_json(message)
        if len(lines) == LOG_BATCH:
            self._want_lines()  # a long log: the rest follows in batches

    def _lines_after(self, line_id: int) -> list[OperationLogLine]:
        lines = list(
            OperationLogLine.objects.filter(operation__uuid=self.live.key, id__gt=line_id)
            .order_by("id")
            .only("id", "created_at", "level", "message")[:LOG_BATCH]
        )
        if lines:
            self.last_line = lines[-1].pk
        return lines

    async def live_changed(self, event):
        if event["seq"] in self.seen:
            return  # replayed already, or heard through two groups
        self.seen.append(event["seq"])
        if self.as_json:
            await self.send_json(_public(event))
            return
        self.pending.setdefault(event["model"], set()).add(event["key"])
        self.pending_seq = max(self.pending_seq, event["seq"])
        if self.flusher is None:
            self.flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(BATCH_DELAY)
        pending, seq = self.pending, self.pending_seq
        self.pending, self.flusher = {}, None
        message = await self.render_keys(pending)
        message["seq"] = seq
        await self.send_json(message)

    async def live_log(self, event):
        if event["op"] != self.live.key or event["id"] <= self.last_line:
            return
        self._want_lines()

    def _want_lines(self) -> None:
        self.lines_wanted = True
        if self.line_reader is None:
            self.line_reader = asyncio.get_running_loop().create_task(self._read_lines())

    async def _read_lines(self) -> None:
        """Send the lines after the last one sent, in order, until no notice is pending."""
        while self.lines_wanted:
            self.lines_wanted = False
            lines = await database_sync_to_async(self._lines_after)(self.last_line)
            if len(lines) == LOG_BATCH:
                self.lines_wanted = True
            if lines:
                await self.send_lines(lines)
        self.line_reader = None

    async def send_lines(self, lines: list[OperationLogLine]) -> None:
        if self.as_json:
            for line in lines:
                await self.send_json(events.log_message(self.live.key, line))
        else:
            await self.send_json(
                {"append": [_line_fragment(line) for line in lines], "line": self.last_line}
            )

    async def render(self, seqs: dict[int, tuple[str, str]]) -> dict:
        keys: dict[str, set[str]] = {}
        for topic, key in seqs.values():
            keys.setdefault(topic, set()).add(key)
        message = await self.render_keys(keys)
        if seqs:
            message["seq"] = max(seqs)
        return message

    async def render_keys(self, keys: dict[str, set[str]]) -> dict:
        if not keys:
            return {}
        fragments, removed = await database_sync_to_async(self.live.fragments)(keys)
        return {
            "rows": [
                {"id": f.id, "html": f.html, "insert": f.insert, "refetch": f.refetch}
                for f in fragments
            ],
            "remove": removed,
        }

    async def send_json(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message))


def _public(message: dict) -> dict:
    """An event as API clients see it: ``changed`` or ``log``."""
    out = dict(message)
    out["type"] = out["type"].removeprefix("live.")
    return out


def _line_fragment(line: OperationLogLine) -> dict:
    return {"target": "op-log", "html": log_line(line)}
