"""One command for an upgrade: migrate, collect static files, restart in rolling order.

The new code is in place (install script, git pull, new image). Migrations run while the
old processes still serve, which is why they must be additive first (docs/install.md,
"Upgrades"). Then the processes are restarted one at a time, each web process waited for
until it is ready again, so nginx always has one to send requests to:

- under systemd (as root): every active panel-web@PORT, then panel-worker@N, then the
  collector and the VPS event listener;
- otherwise, with --pid-dir: each web process started with `runweb --pidfile DIR/web-PORT.pid`
  gets SIGTERM (it drains), and the command waits for the process manager to start it again
  (a new pid in the file) and for it to be ready; then each worker started with
  `qcluster --pidfile DIR/worker-N.pid` the same way (it gives back the operations it had not
  started, finishes the one it runs, and the next worker is stopped only once the new one
  runs: its pid file is written when its cluster has started).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

UNIT_PATTERNS = [
    "panel-web@*.service",
    "panel-worker@*.service",
    "panel-metrics.service",
    "panel-vps-events.service",
]
WEB_UNIT = re.compile(r"panel-web@(\d{1,5})\.service")
WEB_PIDFILE = re.compile(r"web-(\d{1,5})\.pid")
WORKER_PIDFILE = re.compile(r"worker-([A-Za-z0-9_]{1,20})\.pid")


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def ready(port: int, timeout: float = 2.0) -> bool:
    """The web process on 127.0.0.1:port answers /healthz/ready with 200."""
    host = next((h for h in settings.ALLOWED_HOSTS if h and "*" not in h), "localhost")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz/ready", headers={"Host": host.lstrip(".")})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise CommandError(f"{what} within {seconds:.0f} s")
        time.sleep(0.2)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Command(BaseCommand):
    help = "Migrate, collect static files and restart the panel's processes one by one."

    def add_arguments(self, parser):
        parser.add_argument("--skip-migrate", action="store_true", help="only restart")
        parser.add_argument("--no-restart", action="store_true", help="only migrate + static")
        parser.add_argument("--no-static", action="store_true", help="skip collectstatic")
        parser.add_argument("--pid-dir", default="", help="runweb pid files (no systemd)")
        parser.add_argument("--ready-timeout", type=float, default=60.0)
        # A stopping worker finishes its operation first (systemd waits TimeoutStopSec=600).
        parser.add_argument("--worker-timeout", type=float, default=660.0)

    def handle(
        self,
        *args,
        skip_migrate,
        no_restart,
        no_static,
        pid_dir,
        ready_timeout,
        worker_timeout,
        **options,
    ):
        if not skip_migrate:
            self.stdout.write("Applying migrations")
            call_command("migrate", interactive=False, verbosity=1, stdout=self.stdout)
            if not no_static:
                self.stdout.write("Collecting static files")
                call_command("collectstatic", interactive=False, verbosity=0)
        if no_restart:
            return
        if pid_dir:
            self.restart_pids(Path(pid_dir), ready_timeout, worker_timeout)
        elif systemd_running():
            self.restart_units(ready_timeout)
        else:
            self.stdout.write(
                "No systemd and no --pid-dir: restart the web processes one by one, then the "
                "workers, with your process manager."
            )

    def restart_units(self, ready_timeout: float) -> None:
        systemctl = shutil.which("systemctl") or "/usr/bin/systemctl"
        listed = subprocess.run(
            [systemctl, "list-units", "--plain", "--no-legend", "--state=active", "--type=service"]
            + UNIT_PATTERNS,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        units = [line.split()[0] for line in listed.splitlines() if line.strip()]
        # Web processes first (new pages), then the workers (new tasks), then the singletons.
        units.sort(key=lambda u: [p.split("@")[0] for p in UNIT_PATTERNS].index(u.split("@")[0]))
        for unit in units:
            self.stdout.write(f"Restarting {unit}")
            subprocess.run([systemctl, "restart", unit], check=True)
            if match := WEB_UNIT.fullmatch(unit):
                port = int(match.group(1))
                wait_for(lambda port=port: ready(port), ready_timeout, f"{unit} was not ready")
        self.stdout.write(self.style.SUCCESS(f"Restarted {len(units)} units."))

    def restart_pids(self, pid_dir: Path, ready_timeout: float, worker_timeout: float) -> None:
        webs = sorted(p for p in pid_dir.glob("web-*.pid") if WEB_PIDFILE.fullmatch(p.name))
        for pidfile in webs:
            port = int(WEB_PIDFILE.fullmatch(pidfile.name).group(1))
            self.restart_one(
                pidfile,
                f"the web process on port {port}",
                lambda port=port: ready(port),
                ready_timeout,
            )
        found = [p for p in pid_dir.glob("worker-*.pid") if WORKER_PIDFILE.fullmatch(p.name)]
        for pidfile in sorted(found):
            # Its new pid is written once its cluster runs: that is "ready" for a worker.
            self.restart_one(pidfile, f"worker {pidfile.stem[7:]}", lambda: True, worker_timeout)
        self.stdout.write(
            self.style.SUCCESS(f"Restarted {len(webs)} web processes and {len(found)} workers.")
        )

    def restart_one(self, pidfile: Path, what: str, is_ready, timeout: float) -> None:
        old = read_pid(pidfile)
        if old is None:
            return
        self.stdout.write(f"Restarting {what} (pid {old})")
        with contextlib.suppress(ProcessLookupError):  # gone already: wait for the next
            os.kill(old, signal.SIGTERM)

        def restarted() -> bool:
            new = read_pid(pidfile)
            return new is not None and new != old and is_ready()

        wait_for(restarted, timeout, f"{what} was not back")
