"""Serve the panel (Daphne: HTTP + websockets) together with a django-q2 worker."""

import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run Daphne and a django-q2 worker in the foreground; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, bind, port, **options):
        python = sys.executable
        procs = [
            subprocess.Popen([python, "manage.py", "qcluster"]),
            subprocess.Popen(
                [python, "-m", "daphne", "-b", bind, "-p", str(port), "panel.asgi:application"]
            ),
        ]
        self.stdout.write(self.style.SUCCESS(f"Panel at http://{bind}:{port}/ (Ctrl-C stops)"))
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.5)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        codes = [p.returncode for p in procs]
        if not stopping:
            raise SystemExit(f"A process stopped unexpectedly (exit codes {codes}).")
