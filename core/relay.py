"""Embedded mode only: carry live events from the database into the in-memory channel layer.

Workers are other processes and cannot reach this process's in-memory layer, so while at
least one live socket is open here a task tails the event and log-line tables and publishes
what is new, exactly as a writer would through Redis.

Ids are handed out when a row is inserted but become visible when it commits, so with
concurrent writers (PostgreSQL) id 11 may be read before id 10 commits. A tail remembers such
holes and looks for them again for a few seconds before giving up on them (a rolled-back
insert leaves a hole forever).
"""

from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Model, Q

from core import events
from core.models import LiveEvent, OperationLogLine

INTERVAL = 0.2
BATCH = 500
HOLE_SECONDS = 5.0
MAX_HOLES = 10_000  # a jump larger than this (a burned sequence range) is not tracked


class Tail:
    """Rows of one table with an id above the last one read, plus recent holes."""

    def __init__(self, model: type[Model], select_related: tuple[str, ...] = ()) -> None:
        self.model = model
        self.select_related = select_related
        self.last = model.objects.order_by("-id").values_list("id", flat=True).first() or 0
        self.holes: dict[int, float] = {}

    def read(self) -> list:
        query = Q(id__gt=self.last)
        if self.holes:
            query |= Q(id__in=list(self.holes))
        qs = self.model.objects.filter(query).order_by("id")
        if self.select_related:
            qs = qs.select_related(*self.select_related)
        rows = list(qs[:BATCH])
        now = time.monotonic()
        for row in rows:
            self.holes.pop(row.pk, None)
        newest = max((row.pk for row in rows), default=self.last)
        if newest > self.last:
            found = {row.pk for row in rows}
            if newest - self.last <= MAX_HOLES:
                for missing in range(self.last + 1, newest):
                    if missing not in found:
                        self.holes[missing] = now
            self.last = newest
        self.holes = {k: t for k, t in self.holes.items() if now - t < HOLE_SECONDS}
        return rows


class Relay:
    def __init__(self) -> None:
        self.subscribers = 0
        self.task: asyncio.Task | None = None
        self.started: asyncio.Event | None = None

    async def subscribe(self) -> None:
        """Count a socket in; returns once the tail has its starting point, so a socket that
        replays from the database afterwards cannot fall between the two."""
        self.subscribers += 1
        if self.task is None or self.task.done():
            self.started = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run(self.started))
        await self.started.wait()

    def unsubscribe(self) -> None:
        self.subscribers = max(0, self.subscribers - 1)

    async def _run(self, started: asyncio.Event) -> None:
        try:
            tails = await database_sync_to_async(_tails)()
        finally:
            started.set()
        layer = get_channel_layer()
        while self.subscribers > 0:
            for groups, message in await database_sync_to_async(_collect)(tails):
                for group in groups:
                    await layer.group_send(group, message)
            await asyncio.sleep(INTERVAL)
        self.task = None


def _tails() -> tuple[Tail, Tail]:
    return Tail(LiveEvent), Tail(OperationLogLine, ("operation",))


def _collect(tails: tuple[Tail, Tail]) -> list[tuple[list[str], dict]]:
    changes, lines = tails
    out = [(events.event_groups(e), events.event_message(e)) for e in changes.read()]
    newest: dict[str, int] = {}  # one "new lines" notice per operation and tick
    for line in lines.read():
        key = line.operation.uuid.hex
        newest[key] = max(newest.get(key, 0), line.pk)
    out += [([events.group_log(key)], events.log_notice(key, pk)) for key, pk in newest.items()]
    return out


relay = Relay()
