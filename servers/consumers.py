"""Web terminal: a websocket bridged to an SSH shell channel.

Opening it takes a ticket from ``terminal_ticket``: single use, 60 seconds, bound to the
browser session that asked for it. Sessions are recorded (who, when, how long, bytes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import transaction
from django.utils import timezone

from accounts.sessions import may_connect
from core import audit
from servers import connection
from servers.models import Server, TerminalSession, TerminalTicket
from servers.transport import TransportError


def _claim(user, session_key: str, server_uuid, raw: str, ip: str | None):
    """Use up a ticket; return (server, terminal session) or None."""
    digest = hashlib.sha256(raw.encode()).hexdigest()
    with transaction.atomic():
        ticket = (
            TerminalTicket.objects.select_for_update()
            .select_related("server")
            .filter(digest=digest)
            .first()
        )
        if ticket is None or ticket.used_at is not None:
            return None
        ticket.used_at = timezone.now()
        ticket.save(update_fields=["used_at"])
        if (
            ticket.expires_at < timezone.now()
            or ticket.user_id != user.pk
            or ticket.session_key != session_key
            or ticket.server.uuid != server_uuid
            or user.role != "admin"
        ):
            return None
        term = TerminalSession.objects.create(server=ticket.server, user=user, ip=ip)
        audit.record(
            "terminal.open",
            ticket.server,
            actor=user,
            ip=ip,
            changes={"session": [None, str(term.uuid)]},
        )
        return ticket.server, term


def _close(term: TerminalSession, user, bytes_in: int, bytes_out: int) -> None:
    term.ended_at = timezone.now()
    term.bytes_in, term.bytes_out = bytes_in, bytes_out
    term.save(update_fields=["ended_at", "bytes_in", "bytes_out"])
    audit.record(
        "terminal.close",
        term.server,
        actor=user,
        ip=term.ip,
        changes={
            "session": [str(term.uuid), None],
            "seconds": [None, int(term.duration.total_seconds())],
        },
    )


def _open(server: Server, cols: int, rows: int):
    t = connection.open_transport(server, reuse=False)
    return t, t.open_shell(cols, rows)


class TerminalConsumer(AsyncWebsocketConsumer):
    chan = None
    term: TerminalSession | None = None

    async def connect(self):
        self.bytes_in = self.bytes_out = 0
        user = self.scope.get("user")
        session = self.scope.get("session")
        ip = (self.scope.get("client") or (None,))[0]
        if not await database_sync_to_async(may_connect)(user, session or {}, ip):
            await self.close(code=4401)
            return
        raw = (parse_qs((self.scope.get("query_string") or b"").decode()).get("ticket") or [""])[0]
        claimed = await database_sync_to_async(_claim)(
            user,
            getattr(session, "session_key", "") or "",
            self.scope["url_route"]["kwargs"]["uuid"],
            raw,
            ip,
        )
        if claimed is None:
            await self.close(code=4403)
            return
        server, self.term = claimed
        await self.accept()
        try:
            self.transport, self.chan = await asyncio.to_thread(_open, server, 80, 24)
        except TransportError as exc:
            await self.send(text_data=f"\r\n\x1b[31m{exc}\x1b[0m\r\n")
            await self.close(code=1011)
            return
        self.reader = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self):
        while True:
            data = await asyncio.to_thread(self.chan.recv, 32768)
            if not data:
                break
            self.bytes_out += len(data)
            await self.send(bytes_data=data)
        await self.close(code=1000)

    async def receive(self, text_data=None, bytes_data=None):
        if self.chan is None:
            return
        try:
            msg = json.loads(text_data or "{}")
        except ValueError:
            return
        if msg.get("t") == "i" and isinstance(msg.get("d"), str):
            data = msg["d"].encode()
            self.bytes_in += len(data)
            await asyncio.to_thread(self.chan.sendall, data)
        elif msg.get("t") == "r":
            cols, rows = int(msg.get("c", 80)), int(msg.get("r", 24))
            if 10 <= cols <= 500 and 5 <= rows <= 300:
                await asyncio.to_thread(self.chan.resize_pty, cols, rows)

    async def disconnect(self, code):
        if self.chan is not None:
            self.chan.close()
            self.transport.close()
        if self.term is not None:
            await database_sync_to_async(_close)(
                self.term, self.scope["user"], self.bytes_in, self.bytes_out
            )
            self.term = None
