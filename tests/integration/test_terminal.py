import asyncio
import json
import logging
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


async def _closed_with(comm, timeout=10.0) -> int | None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        try:
            msg = await comm.receive_output(timeout=max(0.1, end - loop.time()))
        except TimeoutError:
            return None
        if msg["type"] == "websocket.close":
            return msg.get("code")
    return None


async def test_malformed_frames_are_ignored_and_signing_out_closes(ssh_server, admin_user, caplog):
    """Finding 12: `[1,2]` crashed the consumer (1011) and a terminal outlived its session."""
    client = await sync_to_async(login)(admin_user)
    ticket = await ticket_for(client, ssh_server)
    comm, ok, _ = await _connect(f"/ws/servers/{ssh_server.uuid}/terminal/?ticket={ticket}", client)
    assert ok
    bad_frames = ("[1,2]", '{"t": "r", "c": "x", "r": 5}', "null", '"s"', '{"t": "i", "d": 5}', "{")
    with caplog.at_level(logging.WARNING, logger="servers.consumers"):
        for bad in bad_frames:
            await comm.send_to(text_data=bad)
        await comm.send_to(text_data=json.dumps({"t": "i", "d": "echo still-$((40+2))\n"}))
        assert "still-42" in await read_until(comm, "still-42")
    assert caplog.text.count("ignored a malformed frame") == len(bad_frames)

    await sync_to_async(client.post)("/accounts/logout/")
    assert await _closed_with(comm) == 4001
    await comm.disconnect()  # as the server does once the close handshake ends
    session = await sync_to_async(TerminalSession.objects.get)(server=ssh_server)
    assert session.ended_at is not None
    actions = await sync_to_async(
        lambda: list(AuditEntry.objects.values_list("action", flat=True))
    )()
    assert "terminal.close" in actions and "user.logout" in actions
