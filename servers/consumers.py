"""Web terminal: a websocket bridged to an SSH shell channel.

Opening it takes a ticket from ``terminal_ticket``: single use, 60 seconds, bound to the
browser session that asked for it. Sessions are recorded (who, when, how long, bytes).

A terminal lives no longer than the browser session that opened it: signing out closes it
at once (``close_for_session``, called on logout), and a watchdog closes it when the session
expires or the account may no longer connect. Frames that are not well-formed input or
resize messages are ignored and logged, never fatal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from importlib import import_module
from urllib.parse import parse_qs

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.sessions import may_connect
from core import audit
from core.policy import TERMINAL, may
from servers import connection
from servers.models import Server, TerminalSession, TerminalTicket
from servers.transport import TransportError

log = logging.getLogger(__name__)
WATCHDOG_SECONDS = 30
CLOSE_SESSION_ENDED = 4001
CLOSE_SHELL_FAILED = 4500  # not 1011: Daphne refuses to send reserved close codes


def session_group(session_key: str) -> str:
    return "terminal.session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def close_for_session(session_key: str | None) -> None:
    """Close every terminal opened from this browser session (called when it signs out)."""
    if session_key:
        async_to_sync(get_channel_layer().group_send)(
            session_group(session_key), {"type": "session.ended"}
        )


def _session_alive(user, session_key: str, ip: str | None) -> bool:
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    data = store.load()  # {} once expired or flushed
    if str(data.get("_auth_user_id", "")) != str(user.pk):
        return False
    user.refresh_from_db(fields=["is_active", "ip_allowlist", "role"])
    return may_connect(user, data, ip) and may(user, TERMINAL, Server)


def parse_frame(text: str | None):
    """("i", data) or ("r", cols, rows) for a well-formed frame, else None."""
    try:
        msg = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    if msg.get("t") == "i" and isinstance(msg.get("d"), str):
        return ("i", msg["d"])
    cols, rows = msg.get("c"), msg.get("r")
    sizes_ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (cols, rows))
    if msg.get("t") == "r" and sizes_ok and 10 <= cols <= 500 and 5 <= rows <= 300:
        return ("r", cols, rows)
    return None


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
            or not may(user, TERMINAL, ticket.server)
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
    group: str | None = None
    watchdog: asyncio.Task | None = None

    async def connect(self):
        self.bytes_in = self.bytes_out = 0
        user = self.scope.get("user")
        session = self.scope.get("session")
        self.ip = (self.scope.get("client") or (None,))[0]
        if not await database_sync_to_async(may_connect)(user, session or {}, self.ip):
            await self.close(code=4401)
            return
        raw = (parse_qs((self.scope.get("query_string") or b"").decode()).get("ticket") or [""])[0]
        self.session_key = getattr(session, "session_key", "") or ""
        claimed = await database_sync_to_async(_claim)(
            user,
            self.session_key,
            self.scope["url_route"]["kwargs"]["uuid"],
            raw,
            self.ip,
        )
        if claimed is None:
            await self.close(code=4403)
            return
        server, self.term = claimed
        self.group = session_group(self.session_key)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        try:
            self.transport, self.chan = await asyncio.to_thread(_open, server, 80, 24)
        except TransportError as exc:
            await self.send(text_data=f"\r\n\x1b[31m{exc}\x1b[0m\r\n")
            await self.close(code=CLOSE_SHELL_FAILED)
            return
        loop = asyncio.get_running_loop()
        self.reader = loop.create_task(self._pump())
        self.watchdog = loop.create_task(self._watch())

    async def session_ended(self, event):
        await self.close(code=CLOSE_SESSION_ENDED)

    async def _watch(self):
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            alive = await database_sync_to_async(_session_alive)(
                self.scope["user"], self.session_key, self.ip
            )
            if not alive:
                await self.close(code=CLOSE_SESSION_ENDED)
                return

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
        frame = parse_frame(text_data)
        if frame is None:
            log.warning(
                "terminal %s: ignored a malformed frame (%d characters)",
                self.term.uuid if self.term else "-",
                len(text_data or bytes_data or ""),
            )
            return
        if frame[0] == "i":
            data = frame[1].encode()
            self.bytes_in += len(data)
            await asyncio.to_thread(self.chan.sendall, data)
        else:
            await asyncio.to_thread(self.chan.resize_pty, frame[1], frame[2])

    async def disconnect(self, code):
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.chan is not None:
            self.chan.close()
            self.transport.close()
        if self.term is not None:
            await database_sync_to_async(_close)(
                self.term, self.scope["user"], self.bytes_in, self.bytes_out
            )
            self.term = None
