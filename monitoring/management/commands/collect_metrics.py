"""Collect every server's metrics every PANEL_MONITORING_INTERVAL seconds (one process)."""

from __future__ import annotations

import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django_q.tasks import async_task

from monitoring.collector import collect_round


class Command(BaseCommand):
    help = "Run the monitoring collector: one round every PANEL_MONITORING_INTERVAL seconds."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one round, then exit")

    def handle(self, *args, once, **options):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        interval = max(1, settings.PANEL_MONITORING_INTERVAL)
        next_round = time.monotonic()
        while not stopping:
            close_old_connections()
            result = collect_round()
            async_task("monitoring.tasks.evaluate", group="monitoring.alerts")
            if result.failed or once:
                failed = ", ".join(f"{k}: {v}" for k, v in sorted(result.failed.items()))
                self.stdout.write(
                    f"{result.samples} samples in {result.seconds:.1f}s"
                    + (f"; failed: {failed}" if failed else "")
                )
            if once:
                return
            next_round += interval
            while not stopping and time.monotonic() < next_round:
                time.sleep(min(0.5, max(0.0, next_round - time.monotonic())))
            if time.monotonic() > next_round + interval:
                next_round = time.monotonic()  # a round overran: start afresh, do not burst
