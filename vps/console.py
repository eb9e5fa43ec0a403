"""A VPS's serial console and VNC screen, bridged to a browser's websocket
(vps/consumers.py; docs/vps.md, "Console").

Opening one takes a ticket (``issue_ticket``): single use, 60 seconds, bound to the browser
session and to one VPS and kind. Only users who may change the VPS get one, and only while
it runs and has not expired. Every session is audited when it opens and when it closes
(with its duration and bytes each way).

- Serial: a libvirt stream on the domain's console (``virDomainOpenConsole``), the same
  way for local and remote (``qemu+libssh://``) hypervisors. The stream is non-blocking and
  its events are dispatched by libvirt's default event loop, run in one daemon thread per
  process, so no websocket waits on libvirt.
- VNC: a TCP connection to the port libvirt gave the domain (read from its live XML; the
  domain binds it to the hypervisor's loopback), opened directly for the panel's own host
  and through the server's SSH connection (a direct-tcpip channel) for remote ones.

Either way, what arrives is pushed into an asyncio queue (``None`` at the end); sends are
run in a thread, as a remote libvirt call or a full SSH window may block.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from contextlib import ExitStack, suppress
from datetime import timedelta

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


# --- libvirt's event loop ------------------------------------------------------------------

_events_lock = threading.Lock()
_events_registered = False
_events_pid: int | None = None


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it in a daemon thread, once
    per process. It must be in place before the connection whose streams use it is opened.
    A forked child (a test's live server) inherits the registration but not the thread, so
    the thread is counted per process id."""
    global _events_registered, _events_pid
    libvirt = lv._libvirt()
    with _events_lock:
        if _events_pid == os.getpid():
            return
        if not _events_registered:
            libvirt.virEventRegisterDefaultImpl()
            _events_registered = True

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except libvirt.libvirtError:  # one failed dispatch must not end the loop
                    log.exception("libvirt event loop")
                    time.sleep(0.1)

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _events_pid = os.getpid()


class Feed:
    """Bytes from any thread into an asyncio queue; ``None`` once, at the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._ended = False
        self._lock = threading.Lock()

    def push(self, data: bytes) -> None:
        with suppress(RuntimeError):  # the socket's loop is gone: nobody reads any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, data)

    def end(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        with suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class SerialBridge:
    """The domain's serial console as a non-blocking libvirt stream."""

    def __init__(self, vps: Vps, feed: Feed) -> None:
        self.feed = feed
        self._stack = ExitStack()
        self._closed = False
        self._lock = threading.Lock()
        libvirt = lv._libvirt()
        self.libvirt = libvirt
        ensure_event_loop()
        try:
            session = self._stack.enter_context(lv.connect(vps.hypervisor))
            dom = session.lookup(vps.domain_name)
            if dom is None:
                raise ConsoleError("The VPS's domain is not on the hypervisor.")
            self.stream = session.conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            # FORCE: a console left open elsewhere (another tab) gives way to this one.
            dom.openConsole(None, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            self.stream.eventAddCallback(
                libvirt.VIR_STREAM_EVENT_READABLE
                | libvirt.VIR_STREAM_EVENT_ERROR
                | libvirt.VIR_STREAM_EVENT_HANGUP,
                self._on_event,
                None,
            )
        except lv.HypervisorError as exc:
            self._stack.close()
            raise ConsoleError(str(exc)) from exc
        except libvirt.libvirtError as exc:
            self._stack.close()
            raise ConsoleError(f"The console did not open: {exc.get_error_message()}") from exc
        except BaseException:
            self._stack.close()
            raise

    def _on_event(self, stream, events: int, _opaque) -> None:
        # Runs in the libvirt event thread: read what is there, never wait.
        lv_ = self.libvirt
        if events & lv_.VIR_STREAM_EVENT_READABLE:
            while True:
                try:
                    data = stream.recv(READ_SIZE)
                except lv_.libvirtError:
                    self.feed.end()
                    return
                if data == -2:  # nothing more for now
                    break
                if not data:  # the guest's side closed
                    self.feed.end()
                    return
                self.feed.push(bytes(data))
        if events & (lv_.VIR_STREAM_EVENT_ERROR | lv_.VIR_STREAM_EVENT_HANGUP):
            self.feed.end()

    def send(self, data: bytes) -> None:
        """Blocking (call it in a thread): waits while libvirt's buffer is full, up to 10 s."""
        deadline = time.monotonic() + 10
        while data and not self._closed:
            try:
                sent = self.stream.send(data)
            except self.libvirt.libvirtError:
                self.feed.end()
                return
            if sent == -2:
                if time.monotonic() > deadline:
                    raise ConsoleError("The console does not take input.")
                time.sleep(0.01)
                continue
            data = data[sent:]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with suppress(self.libvirt.libvirtError):
            self.stream.eventRemoveCallback()
        with suppress(self.libvirt.libvirtError):
            self.stream.abort()
        self._stack.close()
        self.feed.end()


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
