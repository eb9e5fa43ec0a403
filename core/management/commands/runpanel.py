"""Serve the panel (Daphne: HTTP + websockets) together with a django-q2 worker.

`make run` uses it with --bootstrap: the first administrator's email and one-time password
are printed last, in a box, once the panel answers (not lost among start-up lines).
"""

import os
import signal
import socket
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

from vps import libvirt_adapter

READY_SECONDS = 60


class Command(BaseCommand):
    help = "Run Daphne and a django-q2 worker in the foreground; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--bootstrap",
            action="store_true",
            help="create the first administrator if there is none, and show how to sign in",
        )
        parser.add_argument(
            "--migrate", action="store_true", help="apply migrations first (quietly)"
        )
        parser.add_argument(
            "--access-log",
            action="store_true",
            help="log every request and informational messages (quiet by default)",
        )

    def handle(self, *args, bind, port, bootstrap, migrate, access_log, **options):
        if migrate:
            from django.core.management import call_command

            call_command("migrate", interactive=False, verbosity=0)
        sign_in = self.bootstrap() if bootstrap else []
        python = sys.executable
        daphne = [python, "-m", "daphne", "-b", bind, "-p", str(port)]
        env = dict(os.environ)
        if not access_log:
            daphne += ["-v", "0"]
            # Warnings and errors only: what needs a look, not every request and start-up step.
            env.setdefault("PANEL_LOG_LEVEL", "WARNING")
        procs = [
            subprocess.Popen([python, "manage.py", "qcluster"], env=env),
            subprocess.Popen([python, "manage.py", "collect_metrics"], env=env),
            subprocess.Popen([*daphne, "panel.asgi:application"], env=env),
        ]
        if libvirt_adapter.available():
            # libvirt lifecycle events of the hypervisors. Without libvirt-python (`make run`
            # does not build it) there is nothing to listen to, and a child that ended would
            # stop the panel: it is not started.
            procs.append(subprocess.Popen([python, "manage.py", "vps_events"], env=env))
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        if self.wait_until_serving(bind, port, procs):
            self.box([f"Unified Hosting Panel: http://{bind}:{port}/", *sign_in, "Ctrl-C stops."])
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

    def bootstrap(self) -> list[str]:
        from accounts.bootstrap import ensure_first_admin

        user, password = ensure_first_admin("admin@example.com")
        if password:
            return [
                f"Sign in as {user.email}",
                f"with the one-time password {password}",
                "(shown once; you set up two-factor sign-in next).",
            ]
        return [
            f"Sign in as {user.email} (password from the first run).",
            "Lost it? PANEL_DEBUG=1 .venv/bin/python manage.py bootstrap_admin --reset",
        ]

    def wait_until_serving(self, bind: str, port: int, procs) -> bool:
        """Wait for the port to accept connections (or a process to die)."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            try:
                with socket.create_connection((bind, port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def box(self, lines: list[str]) -> None:
        width = max(len(line) for line in lines)
        rule = "─" * (width + 2)
        out = [f"┌{rule}┐", *(f"│ {line.ljust(width)} │" for line in lines), f"└{rule}┘"]
        self.stdout.write(self.style.SUCCESS("\n".join(out)))
