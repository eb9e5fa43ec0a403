"""An expected failure is one line in the log: a server that does not speak SSH."""

import socket
import threading

import pytest

from core.operations import execute_operation
from servers.models import Server
from servers.services import start_test_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def not_ssh():
    """A port that accepts connections and answers with something that is not SSH."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_failed_ssh_operation_logs_one_line(admin_user, not_ssh, caplog):
    server = Server.objects.create(
        name="nossh", address="127.0.0.1", ssh_port=not_ssh, owner=admin_user
    )
    op = start_test_connection(server, actor=admin_user)
    with caplog.at_level("INFO"):
        assert execute_operation(op.pk) == "failed"
    noisy = [r for r in caplog.records if r.levelno >= 30]
    assert len(noisy) == 1, [r.getMessage() for r in noisy]
    assert noisy[0].exc_info is None and "Test connection" not in noisy[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


def test_json_log_lines(tmp_path):
    """PANEL_LOG_FORMAT=json: every line one JSON object, tracebacks and extra fields kept."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import django, logging; django.setup(); log = logging.getLogger('panel.test');"
        "log.warning('disk %s full', '/var', extra={'server': 'web1'})\n"
        "try:\n 1/0\nexcept ZeroDivisionError:\n log.exception('boom')"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "panel.settings",
        "PANEL_LOG_FORMAT": "json",
        "PANEL_VAR_DIR": str(tmp_path),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines[0]["message"] == "disk /var full" and lines[0]["level"] == "WARNING"
    assert lines[0]["server"] == "web1" and lines[0]["logger"] == "panel.test"
    assert "ZeroDivisionError" in lines[1]["exception"]
    bad = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=root,
        env={**env, "PANEL_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "PANEL_LOG_FORMAT must be plain or json" in bad.stderr


def test_json_log_drops_non_scalar_extras():
    """Django logs 4xx/5xx with ``extra={"request": request}``: its repr carries the query
    string (a token, a reset key), so objects are left out of JSON lines, scalars kept."""
    import json
    import logging

    from django.test import RequestFactory

    from core.jsonlog import JsonFormatter

    request = RequestFactory().get("/reset/?key=secret-token-value")
    record = logging.LogRecord("django.request", 30, __file__, 1, "Not Found", None, None)
    record.request = request
    record.status_code = 404
    record.tags = ["a"]
    line = JsonFormatter().format(record)
    assert "secret-token-value" not in line
    entry = json.loads(line)
    assert entry["status_code"] == 404 and "request" not in entry and "tags" not in entry
