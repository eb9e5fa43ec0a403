"""Listen to every enabled hypervisor's libvirt lifecycle events (vps/listener.py); runs
until SIGTERM/SIGINT. ``runpanel`` starts it beside the worker."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Keep VPS states current from libvirt lifecycle events (reconnects with backoff)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--rescan", type=float, default=60.0, help="Seconds between reading the hypervisors."
        )

    def handle(self, *args, rescan: float, **options):
        from vps import libvirt_adapter, listener

        if not libvirt_adapter.available():
            self.stderr.write("libvirt support is not installed: no VPS events to listen to.")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        listener.run_forever(stop, rescan=rescan)
