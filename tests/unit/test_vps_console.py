"""Who gets a VPS console ticket, and which tickets the console's websocket refuses. (The
consoles themselves, against a real guest: tests/integration/test_vps_console.py.)"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from core.models import AuditEntry
from servers.models import Server
from tests.conftest import login
from tests.unit.test_live import connect
from vps.models import ConsoleTicket, Hypervisor, Vps, VpsPlan

pytestmark = pytest.mark.django_db(transaction=True)


def _vps(owner, admin, **extra) -> Vps:
    server = Server.objects.create(
        name=f"kvm-{uuid.uuid4().hex[:6]}",
        address="127.0.0.1",
        transport=Server.Transport.LOCAL,
        owner=admin,
    )
    hv = Hypervisor.objects.create(server=server, uri="qemu:///system", storage_pool="p")
    plan = VpsPlan.objects.create(name=f"p-{uuid.uuid4().hex[:6]}")
    values = dict(hostname="web", owner=owner, plan=plan, hypervisor=hv, state=Vps.State.RUNNING)
    values.update(extra, vnc_password="s3cretVN")
    return Vps.objects.create(**values)


@pytest.fixture
def vps(customer, admin_user):
    return _vps(customer, admin_user)


def test_only_who_may_change_the_vps_gets_a_ticket(vps, personas):
    expected = {"admin": 200, "reseller": 200, "customer": 200, "support": 404, "mallory": 404}
    for who, status in expected.items():
        client = login(personas[who])
        for page in ("console", "vnc"):
            assert client.get(f"/vps/{vps.uuid}/{page}/").status_code == status, (who, page)
            resp = client.post(f"/vps/{vps.uuid}/{page}/ticket/")
            assert resp.status_code == status, (who, page)
            if status == 200:
                assert (
                    resp.json()["url"]
                    == f"/ws/vps/{vps.uuid}/console/{page.replace('console', 'serial')}/"
                )
    assert ConsoleTicket.objects.count() == 6
    assert set(ConsoleTicket.objects.values_list("user__email", flat=True)) == {
        personas[w].email for w in ("admin", "reseller", "customer")
    }


def test_the_vnc_password_is_only_in_the_vnc_tickets_answer(vps, customer):
    client = login(customer)
    assert client.post(f"/vps/{vps.uuid}/vnc/ticket/").json()["password"] == "s3cretVN"
    assert "password" not in client.post(f"/vps/{vps.uuid}/console/ticket/").json()
    for url in (f"/vps/{vps.uuid}/", f"/vps/{vps.uuid}/vnc/", f"/vps/{vps.uuid}/console/"):
        assert "s3cretVN" not in client.get(url).content.decode()
    assert client.get(f"/vps/{vps.uuid}/console/ticket/").status_code == 405


@pytest.mark.parametrize(
    "change",
    [
        {"state": Vps.State.PAUSED},
        {"state": Vps.State.STOPPED},
        {"expires_at": timezone.now() - timedelta(minutes=1)},
    ],
)
def test_a_suspended_stopped_or_expired_vps_refuses_its_console(vps, customer, change):
    Vps.objects.filter(pk=vps.pk).update(**change)
    client = login(customer)
    for page in ("console", "vnc"):
        resp = client.post(f"/vps/{vps.uuid}/{page}/ticket/")
        assert resp.status_code == 409 and resp.json()["error"]
        page_html = client.get(f"/vps/{vps.uuid}/{page}/").content.decode()
        assert 'data-testid="console-refused"' in page_html and "data-ticket-url" not in page_html
    assert not ConsoleTicket.objects.exists()
    if "state" in change:  # the buttons show while it runs (the pages say why not)
        detail = client.get(f"/vps/{vps.uuid}/").content.decode()
        assert 'data-testid="vps-console"' not in detail


def test_the_detail_page_offers_the_consoles_to_who_may_change(vps, customer, support):
    page = login(customer).get(f"/vps/{vps.uuid}/").content.decode()
    assert f'href="/vps/{vps.uuid}/console/"' in page and f'href="/vps/{vps.uuid}/vnc/"' in page
    assert (
        'data-testid="vps-console"' not in login(support).get(f"/vps/{vps.uuid}/").content.decode()
    )


async def _ticket(client, vps, page="console") -> str:
    resp = await sync_to_async(client.post)(f"/vps/{vps.uuid}/{page}/ticket/")
    assert resp.status_code == 200
    return resp.json()["ticket"]


async def test_tickets_for_another_vps_session_kind_or_past_their_time_are_refused(
    vps, customer, admin_user
):
    other = await sync_to_async(_vps)(customer, admin_user)
    client = await sync_to_async(login)(customer)
    serial = f"/ws/vps/{vps.uuid}/console/serial/"

    ticket = await _ticket(client, other)  # for another VPS
    assert (await connect(f"{serial}?ticket={ticket}", client))[1:] == (False, 4403)

    ticket = await _ticket(client, vps)  # another browser session of the same user
    second = await sync_to_async(login)(customer)
    assert (await connect(f"{serial}?ticket={ticket}", second))[1:] == (False, 4403)
    # ...and a refused ticket is used up all the same.
    assert (await connect(f"{serial}?ticket={ticket}", client))[1:] == (False, 4403)

    ticket = await _ticket(client, vps, "vnc")  # a VNC ticket on the serial socket
    assert (await connect(f"{serial}?ticket={ticket}", client))[1:] == (False, 4403)

    ticket = await _ticket(client, vps)
    await sync_to_async(ConsoleTicket.objects.update)(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert (await connect(f"{serial}?ticket={ticket}", client))[1:] == (False, 4403)

    lapsed = await sync_to_async(ConsoleTicket.objects.count)()
    ticket = await _ticket(client, vps)  # the VPS expires between ticket and socket
    # Issuing a ticket removed the user's lapsed ones.
    assert await sync_to_async(ConsoleTicket.objects.count)() == 1 < lapsed
    await sync_to_async(Vps.objects.filter(pk=vps.pk).update)(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert (await connect(f"{serial}?ticket={ticket}", client))[1:] == (False, 4403)

    assert (await connect(serial, client))[1:] == (False, 4403)  # no ticket
    assert (await connect(f"{serial}?ticket=forged", client))[1:] == (False, 4403)
    opened = await sync_to_async(AuditEntry.objects.filter(action="vps.console.open").count)()
    assert opened == 0


async def test_someone_elses_ticket_is_refused(vps, customer, mallory):
    owner = await sync_to_async(login)(customer)
    ticket = await _ticket(owner, vps)
    thief = await sync_to_async(login)(mallory)
    path = f"/ws/vps/{vps.uuid}/console/serial/?ticket={ticket}"
    assert (await connect(path, thief))[1:] == (False, 4403)


def test_the_watchdog_ends_a_console_when_its_session_or_vps_goes(vps, customer):
    from vps.consumers import _session_alive

    client = login(customer)
    key = client.session.session_key
    assert _session_alive(customer, key, "127.0.0.1", vps.pk)
    Vps.objects.filter(pk=vps.pk).update(state=Vps.State.PAUSED)  # suspended
    assert not _session_alive(customer, key, "127.0.0.1", vps.pk)
    Vps.objects.filter(pk=vps.pk).update(
        state=Vps.State.RUNNING, expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert not _session_alive(customer, key, "127.0.0.1", vps.pk)
    Vps.objects.filter(pk=vps.pk).update(expires_at=None)
    assert _session_alive(customer, key, "127.0.0.1", vps.pk)
    client.session.flush()  # the browser session expired or was ended elsewhere
    assert not _session_alive(customer, key, "127.0.0.1", vps.pk)


async def _refused_with_reason(client, vps, page: str) -> int | None:
    resp = await sync_to_async(client.post)(f"/vps/{vps.uuid}/{page}/ticket/")
    data = resp.json()
    comm, ok, _ = await connect(f"{data['url']}?ticket={data['ticket']}", client)
    assert ok  # the ticket was good: the socket opens, then says what failed
    msg = await comm.receive_output(timeout=15)
    await comm.disconnect()  # as the browser does once the close handshake ends
    return msg.get("code")


async def test_vnc_that_cannot_be_reached_closes_the_socket(vps, customer, monkeypatch):
    """Faults on the way to the screen: nothing listens on the VNC port of a local
    hypervisor; the SSH server of a remote one does not answer. Each closes with 4500 and
    the session is audited as closed."""
    import socket

    from vps import console

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(console, "_vnc_port", lambda vps: port)
    client = await sync_to_async(login)(customer)
    assert await _refused_with_reason(client, vps, "vnc") == 4500

    hv = vps.hypervisor
    hv.uri = "qemu+libssh:///system"
    await sync_to_async(hv.save)()
    await sync_to_async(Server.objects.filter(pk=hv.server_id).update)(
        transport=Server.Transport.SSH, address="127.0.0.1", ssh_port=port
    )
    assert await _refused_with_reason(client, vps, "vnc") == 4500
    actions = await sync_to_async(
        lambda: list(AuditEntry.objects.values_list("action", flat=True))
    )()
    assert actions.count("vps.console.open") == actions.count("vps.console.close") == 2
