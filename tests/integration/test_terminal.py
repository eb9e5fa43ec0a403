import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from core.models import AuditEntry
from servers.models import TerminalSession, TerminalTicket
from tests.conftest import login
from tests.unit.test_operations import _connect

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def read_until(comm, needle: str, timeout=10.0) -> str:
    out = ""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while needle not in out and loop.time() < end:
        try:
            msg = await comm.receive_output(timeout=max(0.1, end - loop.time()))
        except TimeoutError:
            break
        if msg["type"] == "websocket.send":
            out += (msg.get("bytes") or b"").decode(errors="replace") + (msg.get("text") or "")
        elif msg["type"] == "websocket.close":
            break
    return out


async def ticket_for(client, server):
    resp = await sync_to_async(client.post)(f"/servers/{server.uuid}/terminal/ticket/")
    assert resp.status_code == 200
    return resp.json()["ticket"]


async def test_shell_runs_a_command_and_is_audited(ssh_server, admin_user):
    client = await sync_to_async(login)(admin_user)
    ticket = await ticket_for(client, ssh_server)
    path = f"/ws/servers/{ssh_server.uuid}/terminal/?ticket={ticket}"
    comm, ok, _ = await _connect(path, client)
    assert ok
    await comm.send_to(text_data=json.dumps({"t": "r", "c": 120, "r": 40}))
    await comm.send_to(text_data=json.dumps({"t": "i", "d": "echo hello-$((6*7)); stty size\n"}))
    out = await read_until(comm, "40 120")
    assert "hello-42" in out and "40 120" in out
    await comm.disconnect()
    session = await sync_to_async(TerminalSession.objects.get)(server=ssh_server)
    assert (
        session.ended_at is not None and session.bytes_in > 10 and session.user_id == admin_user.pk
    )
    actions = await sync_to_async(
        lambda: set(AuditEntry.objects.values_list("action", flat=True))
    )()
    assert {"terminal.open", "terminal.close"} <= actions

    page = await sync_to_async(client.get)(f"/servers/{ssh_server.uuid}/")
    assert 'data-testid="terminal-sessions"' in page.content.decode()
    again, ok, code = await _connect(path, client)  # the ticket was single-use
    assert not ok and code == 4403


async def test_expired_foreign_and_missing_tickets_refused(ssh_server, admin_user, support):
    client = await sync_to_async(login)(admin_user)
    ticket = await ticket_for(client, ssh_server)
    await sync_to_async(TerminalTicket.objects.update)(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    path = f"/ws/servers/{ssh_server.uuid}/terminal/"
    _, ok, code = await _connect(f"{path}?ticket={ticket}", client)
    assert not ok and code == 4403
    other = await sync_to_async(login)(admin_user)  # another browser session, same user
    fresh = await ticket_for(client, ssh_server)
    _, ok, code = await _connect(f"{path}?ticket={fresh}", other)
    assert not ok and code == 4403
    _, ok, code = await _connect(path, client)
    assert not ok and code == 4403
    sc = await sync_to_async(login)(support)
    resp = await sync_to_async(sc.post)(f"/servers/{ssh_server.uuid}/terminal/ticket/")
    assert resp.status_code == 404  # terminal is for administrators
