"""A VPS's serial console relayed between libvirt and a pipe, run as its own program by
``vps.console.SerialBridge`` (docs/vps.md, "Console"):

    python serial_relay.py URI DOMAIN

It opens ``URI``, the console of ``DOMAIN`` on a non-blocking libvirt stream
(``VIR_DOMAIN_CONSOLE_FORCE``), writes one status line to stdout (``ok``, or ``error`` and
the reason), then copies stdin to the console and the console to stdout until either ends.

Why a program of its own: a libvirt stream needs libvirt's event loop, whose state is
process-wide (one registration, a lock, the connections' sockets). A web process that
forks (a server with worker processes, a test's live server) after that loop ran in it
leaves the child a loop it cannot run; here every console gets a process that started
fresh (exec'd, never forked from one with the loop) and runs the loop in its main thread.

Backpressure: at most ``OUT_LIMIT`` bytes wait for stdout. Past that the relay waits until
the panel has read them (a blocking write): its event loop stops, so libvirt's client
stops reading the connection (it would queue a stream's packets without limit), libvirtd
stops reading the console's pty and the guest's serial port waits. A reader that is slow
costs no process unbounded memory. (The connection has no keepalive to miss meanwhile: it
is only started on request.) Input waits the same way: stdin is not read while the console
has not taken the last chunk.

Only the standard library and libvirt are imported (no Django): it starts in a few tens of
milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import sys

READ_SIZE = 65536
OUT_LIMIT = 64 * 1024


class Relay:
    def __init__(self, libvirt, conn, stream) -> None:
        self.lv, self.conn, self.stream = libvirt, conn, stream
        self.out = bytearray()  # console -> stdout, not written yet
        self.pending_in = b""  # stdin -> console, not taken yet
        self.done = False
        self.stream_events = -1
        os.set_blocking(0, False)
        os.set_blocking(1, False)
        stream.eventAddCallback(self._wanted_stream_events(), self._on_stream, None)
        self.stream_events = self._wanted_stream_events()
        self.stdin_watch = libvirt.virEventAddHandle(
            0, libvirt.VIR_EVENT_HANDLE_READABLE, self._on_stdin, None
        )
        self.stdout_watch = libvirt.virEventAddHandle(1, 0, self._on_stdout, None)

    def _wanted_stream_events(self) -> int:
        lv = self.lv
        events = 0
        events |= lv.VIR_STREAM_EVENT_READABLE
        if self.pending_in:
            events |= lv.VIR_STREAM_EVENT_WRITABLE
        return events

    def _update(self) -> None:
        if self.done:
            return
        lv = self.lv
        wanted = self._wanted_stream_events()
        if wanted != self.stream_events:
            self.stream.eventUpdateCallback(wanted)
            self.stream_events = wanted
        lv.virEventUpdateHandle(
            self.stdin_watch, 0 if self.pending_in else lv.VIR_EVENT_HANDLE_READABLE
        )
        lv.virEventUpdateHandle(self.stdout_watch, lv.VIR_EVENT_HANDLE_WRITABLE if self.out else 0)

    def _on_stream(self, stream, events: int, _opaque) -> None:
        lv = self.lv
        try:
            if events & lv.VIR_STREAM_EVENT_READABLE:
                while True:
                    data = stream.recv(READ_SIZE)
                    if data == -2:  # nothing more for now
                        break
                    if not data:  # the guest's side closed
                        self.finish()
                        return
                    self.out += data
                    if len(self.out) >= OUT_LIMIT:
                        self._flush_out(wait=True)  # the panel is behind: hold libvirt back
                self._flush_out()
            if events & lv.VIR_STREAM_EVENT_WRITABLE and self.pending_in:
                self._send_in()
            if events & (lv.VIR_STREAM_EVENT_ERROR | lv.VIR_STREAM_EVENT_HANGUP):
                self.finish()
                return
        except (lv.libvirtError, OSError):  # the console, or the panel's end, is gone
            self.finish()
            return
        self._update()

    def _send_in(self) -> None:
        sent = self.stream.send(self.pending_in)
        if sent != -2:
            self.pending_in = self.pending_in[sent:]

    def _on_stdin(self, _watch, fd: int, events: int, _opaque) -> None:
        gone = events & (self.lv.VIR_EVENT_HANDLE_HANGUP | self.lv.VIR_EVENT_HANDLE_ERROR)
        if self.pending_in and not gone:  # not watched now; the console takes the last first
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the panel closed the console
            self.finish()
            return
        self.pending_in = data
        try:
            self._send_in()
        except self.lv.libvirtError:
            self.finish()
            return
        self._update()

    def _flush_out(self, wait: bool = False) -> None:
        """Write what stdout takes now; with ``wait``, all of it, however long that takes."""
        if wait:
            os.set_blocking(1, True)
        try:
            while self.out:
                try:
                    written = os.write(1, self.out)
                except BlockingIOError:
                    return
                del self.out[:written]
        finally:
            if wait:
                os.set_blocking(1, False)

    def _on_stdout(self, _watch, _fd: int, events: int, _opaque) -> None:
        if events & (self.lv.VIR_EVENT_HANDLE_HANGUP | self.lv.VIR_EVENT_HANDLE_ERROR):
            self.finish()  # the panel's end is gone
            return
        try:
            self._flush_out()
        except OSError:  # the panel's end is gone
            self.finish()
            return
        self._update()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        lv = self.lv
        for call in (
            self.stream.eventRemoveCallback,
            self.stream.abort,
            lambda: lv.virEventRemoveHandle(self.stdin_watch),
            lambda: lv.virEventRemoveHandle(self.stdout_watch),
        ):
            with contextlib.suppress(lv.libvirtError):
                call()
        if self.out:  # what the guest said last still reaches the panel, if it reads
            os.set_blocking(1, True)
            with contextlib.suppress(OSError):
                os.write(1, bytes(self.out))


def _status(line: str) -> None:
    os.write(1, (line.replace("\n", " ") + "\n").encode())


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: serial_relay.py URI DOMAIN\n")
        return 2
    uri, name = argv[1], argv[2]
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # raised, not printed
    libvirt.virEventRegisterDefaultImpl()  # before the connection its stream uses
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        _status(f"error Could not reach libvirt: {exc.get_error_message()}")
        return 1
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            _status("error The VPS's domain is not on the hypervisor.")
            return 1
        stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        # FORCE: a console left open elsewhere (another tab) gives way to this one.
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    except libvirt.libvirtError as exc:
        _status(f"error The console did not open: {exc.get_error_message()}")
        conn.close()
        return 1
    _status("ok")
    relay = Relay(libvirt, conn, stream)
    while not relay.done:
        libvirt.virEventRunDefaultImpl()
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
