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
