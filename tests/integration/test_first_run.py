"""`make run` as a new user sees it: the panel's own processes on a fresh var/ directory.

How to sign in comes last, in a box, once the panel answers; requests are not logged; the
second run says how to reset the password."""

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import copy_database

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Panel:
    def __init__(self, var: Path, **extra_env: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(PANEL_DEBUG="1", PANEL_VAR_DIR=str(var), PYTHONUNBUFFERED="1", **extra_env)
        env.pop("PANEL_LOG_LEVEL", None)
        env.pop("SECRET_KEY", None)
        env.pop("PANEL_ENCRYPTION_KEYS", None)
        cmd = [sys.executable, "manage.py", "runpanel", "--migrate", "--bootstrap"]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, text: str, timeout: float = 120) -> list[str]:
        seen = []
        while True:
            line = self.lines.get(timeout=timeout)
            seen.append(line)
            if text in line:
                return seen

    def rest(self, timeout: float) -> list[str]:
        out = []
        try:
            while True:
                out.append(self.lines.get(timeout=timeout))
        except queue.Empty:
            return out

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(30)


def test_first_and_second_run(tmp_path):
    first = Panel(tmp_path)
    try:
        out = first.until("└")
        box = out[out.index(next(line for line in out if line.startswith("┌"))) :]
        text = "\n".join(box)
        assert f"http://127.0.0.1:{first.port}/" in text and "admin@example.com" in text
        assert "one-time password" in text
        for path in ("/accounts/login/", "/static/css/panel.css", "/"):
            urllib.request.urlopen(f"http://127.0.0.1:{first.port}{path}", timeout=10)
        # Nothing after the box: no request lines, no start-up chatter.
        assert first.rest(timeout=2) == []
    finally:
        first.stop()
    second = Panel(tmp_path)
    try:
        text = "\n".join(second.until("└"))
        assert "one-time password" not in text
        assert "manage.py bootstrap_admin --reset" in text
    finally:
        second.stop()


def test_runs_without_libvirt(tmp_path, migrated_sqlite):
    """`make run` does not build libvirt-python: the panel starts and keeps serving without
    it (no child process that has nothing to do ends and takes the panel down with it).
    Its database is migrated already: the first run's migration is the test above."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "libvirt.py").write_text('raise ImportError("libvirt-python is not installed")\n')
    (tmp_path / "var").mkdir()
    copy_database(migrated_sqlite, tmp_path / "var")
    panel = Panel(tmp_path / "var", PYTHONPATH=str(hide))
    try:
        panel.until("└")
        panel.rest(timeout=3)  # a child that ended would stop the panel by now
        assert panel.proc.poll() is None
        urllib.request.urlopen(f"http://127.0.0.1:{panel.port}/accounts/login/", timeout=10)
        vps = urllib.request.urlopen(f"http://127.0.0.1:{panel.port}/vps/", timeout=10)
        assert vps.status == 200  # the sign-in page: the app is there without libvirt
    finally:
        panel.stop()
