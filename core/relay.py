"""Embedded mode only: carry operation events from the database into the in-memory layer.

Workers are other processes and cannot reach this process's in-memory channel layer, so
while at least one websocket is open here, a task reads what changed since it last looked
and publishes it exactly as a worker would through Redis.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from core import events
from core.models import Operation, OperationLogLine

INTERVAL = 0.25
OVERLAP = timedelta(seconds=2)  # re-read recent rows: a commit may land after its timestamp


class Relay:
    def __init__(self) -> None:
        self.subscribers = 0
        self.task: asyncio.Task | None = None
        self.since = timezone.now()
        self.last_line_id = 0
        self.seen: dict[str, tuple] = {}

    def subscribe(self) -> None:
        self.subscribers += 1
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def unsubscribe(self) -> None:
        self.subscribers = max(0, self.subscribers - 1)

    async def _run(self) -> None:
        self.since = timezone.now() - OVERLAP
        self.last_line_id = await database_sync_to_async(_max_line_id)()
        layer = get_channel_layer()
        while self.subscribers > 0:
            batch = await database_sync_to_async(self._collect)()
            for groups, message in batch:
                for group in groups:
                    await layer.group_send(group, message)
            await asyncio.sleep(INTERVAL)
        self.task = None

    def _collect(self) -> list[tuple[list[str], dict]]:
        out = []
        lines = list(
            OperationLogLine.objects.filter(id__gt=self.last_line_id)
            .select_related("operation")
            .order_by("id")[:500]
        )
        for line in lines:
            out.append(
                ([f"op.{line.operation.uuid.hex}"], events.log_message(line.operation, line))
            )
            self.last_line_id = line.pk
        ops = Operation.objects.filter(updated_at__gte=self.since - OVERLAP).select_related("owner")
        for op in ops:
            fingerprint = (op.state, op.progress, op.message, op.updated_at)
            if self.seen.get(op.uuid.hex) == fingerprint:
                continue
            self.seen[op.uuid.hex] = fingerprint
            out.append((events.operation_groups(op), events.update_message(op)))
            self.since = max(self.since, op.updated_at)
        if len(self.seen) > 5000:
            self.seen.clear()
        return out


def _max_line_id() -> int:
    last = OperationLogLine.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


relay = Relay()
