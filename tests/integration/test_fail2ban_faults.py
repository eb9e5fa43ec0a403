# ruff: noqa: F811 - the fixtures imported from test_fail2ban are parameters here
"""fail2ban refusing to reload a jail file its own test accepted, through an apply
Operation against the private fail2ban-server of test_fail2ban: the file is rolled back to
the one fail2ban runs with, fail2ban keeps its jails, the Operation says why; once the cause
is gone the next apply loads the change."""

from __future__ import annotations

import pytest

from core.models import Operation
from servers import services
from servers.fail2ban import UNIT
from tests.integration.test_fail2ban import apply, client, f2b, server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def start_apply(server, actor, capture) -> Operation:
    server.refresh_from_db()
    with capture(execute=True):
        op = services.start_apply(server, actor=actor, units={UNIT})
    op.refresh_from_db()
    return op


def test_a_reload_fail2ban_refuses_is_rolled_back(
    server, f2b, admin_user, q_sync, django_capture_on_commit_callbacks
):
    assert not apply(server).failed_units
    jail = f2b / "conf" / "jail.d" / "hosting-panel.local"
    before = jail.read_text()
    assert "maxretry = 3" in before
    # A valid change (fail2ban-client -t accepts it), and a reload that cannot reach the
    # server (the socket the profile names is not fail2ban's).
    real_socket = server.profile["fail2ban_socket"]
    server.profile = {
        **server.profile,
        "fail2ban_maxretry": 4,
        "fail2ban_socket": str(f2b / "gone.sock"),
    }
    server.save()
    op = start_apply(server, admin_user, django_capture_on_commit_callbacks)
    lines = " ".join(op.lines.values_list("message", flat=True))
    assert op.state == "failed" and "Could not find server" in op.error, op.error
    assert "previous files restored" in op.error, op.error
    assert f"{UNIT} is rolled back" in lines, lines
    assert jail.read_text() == before
    assert not [p for p in jail.parent.iterdir() if p.name.startswith(".panel")]
    status = client(f2b, "status")
    assert "sshd" in status and "nginx-http-auth" in status
    assert "3" in client(f2b, "get", "sshd", "maxretry")

    # The cause gone, the next apply loads the change.
    server.profile = {**server.profile, "fail2ban_socket": real_socket}
    server.save()
    op = start_apply(server, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "succeeded", op.error
    assert "maxretry = 4" in jail.read_text()
    assert "4" in client(f2b, "get", "sshd", "maxretry")
