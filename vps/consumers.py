"""The websockets of a VPS's serial console and VNC screen (the bridges are in
vps/console.py). They follow the server terminal (servers/consumers.py): a ticket opens the
socket, signing out closes it at once (``servers.consumers.close_for_session`` reaches this
session group too), and a watchdog closes it when the browser session expires, the user may
no longer change the VPS, or the VPS stops running or expires.

Serial frames are the terminal's JSON (``{"t": "i", "d": ...}``; resize frames are ignored,
a serial line has no size); VNC frames are the RFB bytes, as noVNC sends them.

Flow control: the web server takes every frame sent at once (Daphne buffers it for a slow
browser without limit), so the serial socket sends at most ``ACK_WINDOW`` bytes the browser
has not acknowledged (``{"t": "a", "n": bytes}``, sent by static/js/terminal.js once
xterm.js has drawn them). Past that the pump waits, the console's feed fills and its source
waits (docs/vps.md, "Console"). VNC needs none: RFB sends a screen update only when the
browser asks for one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from importlib import import_module
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.sessions import may_connect
from servers.consumers import CLOSE_SESSION_ENDED, CLOSE_SHELL_FAILED, parse_frame, session_group
from vps import console

log = logging.getLogger(__name__)
WATCHDOG_SECONDS = 30
ACK_WINDOW = 256 * 1024  # serial bytes sent and not yet acknowledged by the browser


def parse_ack(text: str | None) -> int | None:
    """The byte count of an acknowledgement frame ``{"t": "a", "n": bytes}``, else None."""
    if not text or '"a"' not in text:
        return None
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    if not isinstance(msg, dict) or msg.get("t") != "a":
        return None
    n = msg.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 1 << 30:
        return n
    return None


def _session_alive(user, session_key: str, ip: str | None, vps_id: int) -> bool:
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    data = store.load()  # {} once expired or flushed
    if str(data.get("_auth_user_id", "")) != str(user.pk):
        return False
    user.refresh_from_db(fields=["is_active", "ip_allowlist", "role"])
    return may_connect(user, data, ip) and console.still_allowed(user, vps_id)


class ConsoleConsumer(AsyncWebsocketConsumer):
    kind = "serial"
    bridge = None
    vps = None
    group: str | None = None
    tasks: tuple = ()

    def __init__(self, *args, kind: str | None = None, **kwargs) -> None:
        """``ConsoleConsumer.as_asgi(kind="vnc")``: Channels passes it here."""
        super().__init__(*args, **kwargs)
        if kind is not None:
            self.kind = kind

    async def connect(self):
        self.bytes_in = self.bytes_out = 0
        self.unacked = 0
        self.acked = asyncio.Event()
        self.started = time.monotonic()
        user = self.scope.get("user")
        session = self.scope.get("session")
        self.ip = (self.scope.get("client") or (None,))[0]
        if not await database_sync_to_async(may_connect)(user, session or {}, self.ip):
            await self.close(code=4401)
            return
        raw = (parse_qs((self.scope.get("query_string") or b"").decode()).get("ticket") or [""])[0]
        self.session_key = getattr(session, "session_key", "") or ""
        claimed = await database_sync_to_async(console.claim_ticket)(
            user,
            self.session_key,
            self.scope["url_route"]["kwargs"]["uuid"],
            self.kind,
            raw,
            self.ip,
        )
        if claimed is None:
            await self.close(code=4403)
            return
        self.vps, self.session_id = claimed
        self.group = session_group(self.session_key)
        await self.channel_layer.group_add(self.group, self.channel_name)
        # noVNC may ask for the "binary" subprotocol; a browser drops a socket whose
        # answer names none it offered.
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol="binary" if "binary" in offered else None)
        feed = console.Feed(asyncio.get_running_loop())
        opener = console.open_vnc if self.kind == "vnc" else console.open_serial
        try:
            self.bridge = await asyncio.to_thread(opener, self.vps, feed)
        except console.ConsoleError as exc:
            if self.kind == "serial":
                await self.send(text_data=f"\r\n\x1b[31m{exc}\x1b[0m\r\n")
            log.warning("console of %s did not open: %s", self.vps, exc)
            await self.close(code=CLOSE_SHELL_FAILED)
            return
        loop = asyncio.get_running_loop()
        self.tasks = (loop.create_task(self._pump(feed)), loop.create_task(self._watch()))

    async def session_ended(self, event):
        await self.close(code=CLOSE_SESSION_ENDED)

    async def _watch(self):
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            alive = await database_sync_to_async(_session_alive)(
                self.scope["user"], self.session_key, self.ip, self.vps.pk
            )
            if not alive:
                await self.close(code=CLOSE_SESSION_ENDED)
                return

    async def _pump(self, feed: console.Feed):
        while True:
            data = await feed.queue.get()
            if data is None:
                break
            if self.kind == "serial":
                while self.unacked >= ACK_WINDOW:  # the browser is behind: wait for its acks
                    self.acked.clear()
                    await self.acked.wait()
                self.unacked += len(data)
            self.bytes_out += len(data)
            await self.send(bytes_data=data)
            feed.taken(len(data))
        await self.close(code=1000)

    async def receive(self, text_data=None, bytes_data=None):
        if self.bridge is None:
            return
        if self.kind == "vnc":
            data = bytes_data
        else:
            acked = parse_ack(text_data)
            if acked is not None:
                self.unacked = max(0, self.unacked - acked)
                self.acked.set()
                return
            frame = parse_frame(text_data)
            data = frame[1].encode() if frame is not None and frame[0] == "i" else None
            if frame is not None and frame[0] == "r":
                return
        if not data:
            log.warning(
                "console %s: ignored a malformed frame (%d characters)",
                self.session_id,
                len(text_data or bytes_data or ""),
            )
            return
        self.bytes_in += len(data)
        try:
            await asyncio.to_thread(self.bridge.send, data)
        except (console.ConsoleError, OSError) as exc:
            log.warning("console %s: input not delivered: %s", self.session_id, exc)
            await self.close(code=CLOSE_SHELL_FAILED)

    async def disconnect(self, code):
        for task in self.tasks:
            task.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.bridge is not None:
            await asyncio.to_thread(self.bridge.close)
            self.bridge = None
        if self.vps is not None:
            vps, self.vps = self.vps, None
            await database_sync_to_async(console.record_close)(
                vps,
                self.scope["user"],
                kind=self.kind,
                session_id=self.session_id,
                ip=self.ip,
                seconds=int(time.monotonic() - self.started),
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
            )
