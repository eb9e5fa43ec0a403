"""One web process: Daphne serving the panel, draining on SIGTERM.

Daphne's own SIGTERM handling stops the reactor and cancels every connection at once: a
page's websocket dies without a close frame and a request half-way through gets nothing.
Here SIGTERM (or SIGINT) drains instead:

1. stop listening, so the proxy sends new connections to the other web processes;
2. /healthz/ready answers 503 from now on (a load balancer that probes takes it out);
3. close every websocket with 4503 ("restarting"): the page reconnects at once (to
   another process, through the proxy) and replays what it missed (docs/live-events.md);
4. let running HTTP requests finish, for at most --drain-seconds, then stop.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from django.core.management.base import BaseCommand

log = logging.getLogger(__name__)

# "Restarting: reconnect". RFC 6455's own 1012 would say it, but Autobahn (Daphne's websocket
# layer) sends only 1000 and 3000-4999; live.js reconnects on anything but 4401/4404.
SERVICE_RESTART = 4503


class Command(BaseCommand):
    help = "Serve HTTP and websockets with Daphne; SIGTERM drains connections, then stops."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--drain-seconds", type=float, default=20.0)
        parser.add_argument("--pidfile", default="", help="write the process id here")
        parser.add_argument("--access-log", action="store_true")

    def handle(self, *args, bind, port, drain_seconds, pidfile, access_log, **options):
        if pidfile:
            Path(pidfile).write_text(f"{os.getpid()}\n")
        server = build_server(bind, port, drain_seconds, access_log=access_log)
        try:
            server.run()
        finally:
            if pidfile:
                Path(pidfile).unlink(missing_ok=True)


def build_server(bind: str, port: int, drain_seconds: float, *, access_log: bool = False):
    """A Daphne server on bind:port that drains on SIGTERM/SIGINT (see the module)."""
    import sys

    from daphne.access import AccessLogGenerator
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import reactor

    from core import health
    from panel.asgi import application

    class DrainingServer(Server):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.ports: list = []
            self.draining_since: float | None = None

        def listen_success(self, listening_port):
            super().listen_success(listening_port)
            self.ports.append(listening_port)
            return listening_port

        def run(self):
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: reactor.callFromThread(self.drain))
            super().run()

        def drain(self) -> None:
            if self.draining_since is not None:
                return
            self.draining_since = time.monotonic()
            try:
                health.start_draining()
                for listening_port in self.ports:
                    listening_port.stopListening()
                sockets = [p for p in self.connections if isinstance(p, WebSocketProtocol)]
                for protocol in sockets:
                    protocol.serverClose(code=SERVICE_RESTART)
                log.info("draining: closed %d websockets", len(sockets))
            except Exception:  # never left half-stopped: stop now instead
                log.exception("draining failed; stopping at once")
                self.stop()
                return
            self.wait_drained()

        def wait_drained(self) -> None:
            # Requests finishing, and websockets until their close handshake is done (else the
            # close frame is lost with the process and the page sees an abrupt 1006).
            busy = [p for p, details in self.connections.items() if not details.get("disconnected")]
            if busy and time.monotonic() - self.draining_since < drain_seconds:
                reactor.callLater(0.05, self.wait_drained)
                return
            log.info("drained (%d connections cut short); stopping", len(busy))
            self.stop()

    return DrainingServer(
        application=application,
        endpoints=[f"tcp:port={port}:interface={bind}"],
        signal_handlers=False,
        verbosity=1 if access_log else 0,
        action_logger=AccessLogGenerator(sys.stdout) if access_log else None,
        # A proxy in front (nginx) holds websockets open for hours; pings keep idle ones alive.
        ping_interval=20,
        ping_timeout=30,
        application_close_timeout=10,
        websocket_handshake_timeout=5,
        proxy_forwarded_address_header=None,
    )
