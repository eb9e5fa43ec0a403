"""A VPS's serial console and VNC screen, bridged to a browser's websocket
(vps/consumers.py; docs/vps.md, "Console").

Opening one takes a ticket (``issue_ticket``): single use, 60 seconds, bound to the browser
session and to one VPS and kind. Only users who may change the VPS get one, and only while
it runs and has not expired. Every session is audited when it opens and when it closes
(with its duration and bytes each way).

- Serial: a libvirt stream on the domain's console (``virDomainOpenConsole``), the same
  way for local and remote (``qemu+libssh://``) hypervisors, relayed by a process of its
  own per console (vps/serial_relay.py, which runs libvirt's event loop), so the web
  process never holds libvirt's loop (a process that forks must not) and no websocket
  waits on libvirt.
- VNC: a TCP connection to the port libvirt gave the domain (read from its live XML; the
  domain binds it to the hypervisor's loopback), opened directly for the panel's own host
  and through the server's SSH connection (a direct-tcpip channel) for remote ones.

Either way, what arrives is pushed into an asyncio queue (``None`` at the end) of bounded
size: while the browser is behind, the reading thread waits, and the source with it (the
relay stops reading libvirt's stream, the VNC server's socket fills). Sends are run in a
thread, as a full pipe or SSH window may block.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from core import audit
from core.policy import CHANGE, may
from vps import libvirt_adapter as lv
from vps.models import ConsoleTicket, Vps

log = logging.getLogger(__name__)
TICKET_SECONDS = 60
READ_SIZE = 65536


class ConsoleError(Exception):
    """The console could not be opened (shown to the user in the console)."""


def console_refusal(vps: Vps) -> str | None:
    """Why the console of ``vps`` cannot be opened now, or None when it can."""
    if vps.expires_at is not None and vps.expires_at <= timezone.now():
        return "This VPS has expired: its console is closed."
    if vps.state != Vps.State.RUNNING:
        return "The console opens only while the VPS runs."
    if vps.hypervisor_id is None:
        return "This VPS is on no hypervisor."
    return None


def issue_ticket(vps: Vps, user, session_key: str, kind: str) -> str:
    """A new raw ticket; only its digest is stored. The caller checked ``may(CHANGE)``."""
    if kind not in ConsoleTicket.Kind.values:
        raise ValueError(kind)
    raw = secrets.token_urlsafe(32)
    # The user's used and lapsed tickets go now (by the user index), so the table stays small.
    ConsoleTicket.objects.filter(user=user, expires_at__lt=timezone.now()).delete()
    ConsoleTicket.objects.create(
        digest=hashlib.sha256(raw.encode()).hexdigest(),
        user=user,
        vps=vps,
        kind=kind,
        session_key=session_key,
        expires_at=timezone.now() + timedelta(seconds=TICKET_SECONDS),
    )
    return raw


def claim_ticket(user, session_key: str, vps_uuid, kind: str, raw: str, ip: str | None):
    """Use up a ticket and audit the opening; (vps, session id) or None when refused."""
    digest = hashlib.sha256(raw.encode()).hexdigest()
    with transaction.atomic():
        ticket = (
            ConsoleTicket.objects.select_for_update(of=("self",))  # PG: no outer-join locks
            .select_related("vps__hypervisor__server")
            .filter(digest=digest)
            .first()
        )
        if ticket is None or ticket.used_at is not None:
            return None
        ticket.used_at = timezone.now()
        ticket.save(update_fields=["used_at"])
        vps = ticket.vps
        if (
            ticket.expires_at < timezone.now()
            or ticket.user_id != user.pk
            or not session_key
            or ticket.session_key != session_key
            or vps.uuid != vps_uuid
            or ticket.kind != kind
            or not may(user, CHANGE, vps)
            or console_refusal(vps) is not None
        ):
            return None
        session_id = secrets.token_hex(8)
        audit.record(
            "vps.console.open",
            vps,
            actor=user,
            ip=ip,
            changes={"kind": [None, kind], "session": [None, session_id]},
        )
        return vps, session_id


def record_close(
    vps: Vps, user, *, kind: str, session_id: str, ip, seconds: int, bytes_in: int, bytes_out: int
) -> None:
    audit.record(
        "vps.console.close",
        vps,
        actor=user,
        ip=ip,
        changes={
            "kind": [kind, None],
            "session": [session_id, None],
            "seconds": [None, seconds],
            "bytes_in": [None, bytes_in],
            "bytes_out": [None, bytes_out],
        },
    )


def still_allowed(user, vps_id: int) -> bool:
    """For the watchdog: the user may still change the VPS, and it still runs."""
    vps = Vps.objects.filter(pk=vps_id).first()
    return vps is not None and may(user, CHANGE, vps) and console_refusal(vps) is None


# --- the bridges ---------------------------------------------------------------------------

# Bytes a console may have read but the websocket not sent yet; its reader waits past this.
FEED_LIMIT = 1 << 20
RELAY = Path(__file__).with_name("serial_relay.py")
OPEN_SECONDS = 30


class Feed:
    """Bytes from any thread into an asyncio queue; ``None`` once, at the end. ``push``
    waits (in the reading thread) while ``limit`` bytes are queued and not yet ``taken``, so
    a browser that reads slowly holds the source back instead of growing this queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int | None = None) -> None:
        self.loop = loop
        self.limit = FEED_LIMIT if limit is None else limit
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.buffered = 0
        self._ended = False
        self._room = threading.Condition()

    def push(self, data: bytes) -> None:
        with self._room:
            while self.buffered >= self.limit and not self._ended:
                self._room.wait()
            if self._ended:
                return
            self.buffered += len(data)
        with suppress(RuntimeError):  # the socket's loop is gone: nobody reads any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, data)

    def taken(self, count: int) -> None:
        """``count`` bytes have left for the browser (called by the websocket's pump)."""
        with self._room:
            self.buffered -= count
            self._room.notify_all()

    def end(self) -> None:
        with self._room:
            if self._ended:
                return
            self._ended = True
            self._room.notify_all()
        with suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class SerialBridge:
    """The domain's serial console, relayed by a process of its own (vps/serial_relay.py:
    libvirt's stream needs libvirt's event loop, which a process that may fork must not
    hold). Its stdout is read by a thread into the feed; input is written to its stdin."""

    def __init__(self, vps: Vps, feed: Feed) -> None:
        self.feed = feed
        self._closed = False
        self._lock = threading.Lock()
        lv._libvirt()  # "libvirt support is not installed" before anything starts
        workdir = Path(tempfile.mkdtemp(prefix="panel-console-"))
        try:
            uri = lv.connection_uri(vps.hypervisor, workdir)
            self.proc = subprocess.Popen(  # noqa: S603 - argv of a validated URI and name
                [sys.executable, "-I", str(RELAY), uri, vps.domain_name],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
            )
            try:
                rest = self._status()
            except BaseException:
                self._stop()
                raise
        except lv.HypervisorError as exc:
            raise ConsoleError(str(exc)) from exc
        finally:
            # Once connected (or refused) the relay needs the key and known_hosts no more.
            shutil.rmtree(workdir, ignore_errors=True)
        os.set_blocking(self.proc.stdin.fileno(), False)
        if rest:
            feed.push(rest)
        threading.Thread(target=self._read, name="vps-serial", daemon=True).start()

    def _status(self) -> bytes:
        """The relay's first line: ``ok`` (returns what came after it) or ``error ...``."""
        fd = self.proc.stdout.fileno()
        got = b""
        deadline = time.monotonic() + OPEN_SECONDS
        while b"\n" not in got:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ConsoleError("The hypervisor did not open the console in time.")
            data = os.read(fd, READ_SIZE)
            if not data:
                raise ConsoleError("The console did not open (its relay ended).")
            got += data
        line, rest = got.split(b"\n", 1)
        text = line.decode(errors="replace")
        if text != "ok":
            raise ConsoleError(text.removeprefix("error ").strip() or "The console did not open.")
        return rest

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()
        try:
            while True:
                data = os.read(fd, READ_SIZE)
                if not data:
                    break
                self.feed.push(data)  # waits while the browser is behind
        except OSError:
            pass
        finally:
            self.feed.end()

    def send(self, data: bytes) -> None:
        """Blocking (call it in a thread): waits while the console does not take input,
        up to 10 s."""
        fd = self.proc.stdin.fileno()
        deadline = time.monotonic() + 10
        while data and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise ConsoleError("The console does not take input.")
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                continue
            except OSError:  # the relay ended
                self.feed.end()
                return

    def _stop(self) -> None:
        with suppress(OSError):
            self.proc.stdin.close()  # the relay ends on EOF
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with suppress(OSError):
            self.proc.stdout.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.feed.end()  # first: a reader waiting for room lets go
        self._stop()


class SocketBridge:
    """A byte stream (a socket, or an SSH channel) read by a thread of its own."""

    def __init__(self, sock, feed: Feed, closers: tuple = ()) -> None:
        self.sock, self.feed, self._closers = sock, feed, closers
        self._closed = False
        threading.Thread(target=self._read, name="vps-vnc", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(READ_SIZE)
                if not data:
                    break
                self.feed.push(data)
        except OSError:
            pass
        finally:
            self.feed.end()

    def send(self, data: bytes) -> None:
        if not self._closed:
            self.sock.sendall(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if isinstance(self.sock, socket.socket):
            with suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
        with suppress(OSError):
            self.sock.close()
        for close in self._closers:
            with suppress(Exception):
                close()
        self.feed.end()


def _vnc_port(vps: Vps) -> int:
    try:
        with lv.connect(vps.hypervisor) as session:
            port = session.vnc_port(vps.domain_name)
    except lv.HypervisorError as exc:
        raise ConsoleError(str(exc)) from exc
    if port is None:
        raise ConsoleError("The VPS has no VNC screen (is it running?).")
    return port


def open_vnc(vps: Vps, feed: Feed) -> SocketBridge:
    """Blocking (call it in a thread). The port is the live domain's; the address the
    hypervisor's loopback, reached through SSH unless the hypervisor is this host."""
    from servers import connection
    from servers.transport import TransportError

    port = _vnc_port(vps)
    if not vps.hypervisor.uri.startswith("qemu+"):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError as exc:
            raise ConsoleError(f"VNC on port {port} did not answer: {exc}") from exc
        sock.settimeout(None)
        return SocketBridge(sock, feed)
    try:
        transport = connection.open_transport(vps.hypervisor.server, reuse=False)
        if not hasattr(transport, "open_tunnel"):
            transport.close()
            raise ConsoleError("A remote libvirt URI needs a server reached over SSH.")
        try:
            chan = transport.open_tunnel("127.0.0.1", port)
        except TransportError:
            transport.close()
            raise
    except TransportError as exc:
        raise ConsoleError(str(exc)) from exc
    return SocketBridge(chan, feed, closers=(transport.close,))


def open_serial(vps: Vps, feed: Feed) -> SerialBridge:
    """Blocking (call it in a thread)."""
    return SerialBridge(vps, feed)
