"""A VPS's serial console and VNC screen through the panel's websockets, against a real
libvirtd running a real qemu guest (a kernel and a busybox initramfs with a shell on its
serial port; tests/integration/libvirt.py), and against SSH for a remote hypervisor."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid as uuidlib
import xml.etree.ElementTree as ET

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from core.models import AuditEntry
from servers.models import Server
from tests.conftest import login, wait_until
from tests.integration.conftest import SSH_HOST
from tests.integration.libvirt import (  # noqa: F401 - fixtures
    libvirt_sshd,
    libvirtd,
    make_test_hypervisor,
    need_libvirt,
    tiny_guest_files,
    tiny_guest_xml,
)
from tests.integration.test_terminal import _closed_with, read_until
from vps.models import Hypervisor, Vps, VpsPlan

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
GUEST_UUID = uuidlib.uuid4()
VNC_PASSWORD = "k3yZ9qW1"


@pytest.fixture(scope="module")
def guest(libvirtd, tiny_guest_files):  # noqa: F811
    """The tiny guest, running, once its shell is up (its serial log says so)."""
    name = f"vps-{GUEST_UUID.hex}"
    log = tiny_guest_files["dir"] / "serial.log"
    xml = tiny_guest_xml(
        name,
        kernel=tiny_guest_files["kernel"],
        initrd=tiny_guest_files["initrd"],
        log=log,
        vnc_password=VNC_PASSWORD,
    )
    dom = libvirtd["conn"].defineXML(xml)
    dom.create()
    wait_until(lambda: log.exists() and b"panel-guest-ready" in log.read_bytes(), timeout=120)
    return {**libvirtd, "dom": dom, "log": log}


def _vps(owner, hypervisor, **extra) -> Vps:
    plan = VpsPlan.objects.create(name=f"p-{uuidlib.uuid4().hex[:6]}", vcpus=1, memory_mib=192)
    values = dict(
        uuid=GUEST_UUID,
        hostname="tiny",
        owner=owner,
        plan=plan,
        hypervisor=hypervisor,
        state=Vps.State.RUNNING,
        vnc_password=VNC_PASSWORD,
    )
    values.update(extra)
    return Vps.objects.create(**values)


@pytest.fixture
def local_vps(guest, admin_user, customer):
    server = Server.objects.create(
        name="kvm1", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin_user
    )
    hv = Hypervisor.objects.create(
        server=server, uri=guest["uri"], storage_pool=guest["pool"], network=""
    )
    return _vps(customer, hv)


async def _ticket(client, vps, kind: str) -> dict:
    page = "console" if kind == "serial" else "vnc"
    resp = await sync_to_async(client.post)(f"/vps/{vps.uuid}/{page}/ticket/")
    assert resp.status_code == 200, resp.content
    return resp.json()


async def _open(client, path: str, subprotocols=None):
    from panel.asgi import application

    comm = WebsocketCommunicator(
        application,
        path,
        headers=[
            (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
            (b"origin", b"http://testserver"),
            (b"host", b"testserver"),
        ],
        subprotocols=subprotocols,
    )
    ok, code = await comm.connect(timeout=10)
    return comm, ok, code


async def _read_bytes(comm, count: int, timeout=15.0) -> bytes:
    out = b""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(out) < count and loop.time() < end:
        msg = await comm.receive_output(timeout=max(0.1, end - loop.time()))
        if msg["type"] == "websocket.close":
            break
        out += msg.get("bytes") or b""
    return out


async def _until_closed(comm, timeout=15.0) -> tuple[str, int | None]:
    out = ""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        msg = await comm.receive_output(timeout=max(0.1, end - loop.time()))
        if msg["type"] == "websocket.close":
            return out, msg.get("code")
        out += msg.get("text") or ""
    return out, None


async def _actions() -> list[tuple[str, dict]]:
    return await sync_to_async(
        lambda: list(AuditEntry.objects.order_by("id").values_list("action", "changes"))
    )()


async def test_serial_console_runs_a_command_in_the_guest_and_is_audited(local_vps, customer):
    client = await sync_to_async(login)(customer)
    data = await _ticket(client, local_vps, "serial")
    assert "password" not in data
    path = f"{data['url']}?ticket={data['ticket']}"
    comm, ok, _ = await _open(client, path)
    assert ok
    await comm.send_to(text_data=json.dumps({"t": "r", "c": 100, "r": 30}))  # ignored
    await comm.send_to(text_data=json.dumps({"t": "i", "d": "echo console-$((6*7))\n"}))
    out = await read_until(comm, "console-42", timeout=30)
    assert "console-42" in out
    await comm.disconnect()

    entries = [(a, c) for a, c in await _actions() if a.startswith("vps.console")]
    assert [a for a, _ in entries] == ["vps.console.open", "vps.console.close"]
    closed = entries[1][1]
    assert closed["kind"] == ["serial", None]
    assert closed["bytes_in"][1] == len("echo console-$((6*7))\n")
    assert closed["bytes_out"][1] >= len("console-42")
    assert closed["session"][0] == entries[0][1]["session"][1]

    again, ok, code = await _open(client, path)  # single use
    assert not ok and code == 4403


FLOW_LINES = 3000  # about 190 KB of output: far past the small window and feed below
FLOW_COMMAND = (
    f"i=0; while [ $i -lt {FLOW_LINES} ]; do i=$((i+1)); "
    "echo flow-$i-.................................................; done; echo done-$((40+2))\n"
)


async def test_a_browser_that_does_not_acknowledge_holds_the_console_back(
    local_vps, customer, monkeypatch
):
    """A browser that reads nothing gets at most the window; the panel's queue stays
    within its limit while the guest keeps printing (the source is held back). Once it
    acknowledges, everything arrives in order: nothing was dropped."""
    from vps import console, consumers

    window = limit = 4096
    monkeypatch.setattr(consumers, "ACK_WINDOW", window)
    feeds = []

    class RecordingFeed(console.Feed):
        def __init__(self, loop, limit=None):
            super().__init__(loop, limit=limit_)
            self.full = threading.Event()
            self.sent = self.most = 0
            feeds.append(self)

        def push(self, data):
            with self._room:
                if self.buffered >= self.limit:
                    self.full.set()  # the reader waits for room now
            super().push(data)
            self.most = max(self.most, self.buffered)

        def taken(self, count):
            self.sent += count
            super().taken(count)

    limit_ = limit
    monkeypatch.setattr(console, "Feed", RecordingFeed)
    client = await sync_to_async(login)(customer)
    data = await _ticket(client, local_vps, "serial")
    comm, ok, _ = await _open(client, f"{data['url']}?ticket={data['ticket']}")
    assert ok
    await comm.send_to(text_data=json.dumps({"t": "i", "d": FLOW_COMMAND}))
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while not (feeds and feeds[0].full.is_set()) and loop.time() < end:
        await asyncio.sleep(0.05)  # the socket's pump runs on this loop: poll, never block
    assert feeds and feeds[0].full.is_set(), "the console's reader never waited for room"
    feed = feeds[0]
    # The pump stopped at the window: what it sent is all the browser has, one chunk over
    # at most, and the feed never held much more than its limit.
    assert feed.sent <= window + console.READ_SIZE
    assert feed.most <= limit + console.READ_SIZE
    got = b""
    while len(got) < feed.sent:
        msg = await comm.receive_output(timeout=10)
        got += msg.get("bytes") or b""
    assert len(got) == feed.sent
    assert "done-42" not in got.decode(errors="replace")

    await comm.send_to(text_data=json.dumps({"t": "a", "n": len(got)}))
    out = got
    end = loop.time() + 60
    while b"done-42" not in out and loop.time() < end:
        msg = await comm.receive_output(timeout=max(0.1, end - loop.time()))
        chunk = msg.get("bytes") or b""
        out += chunk
        await comm.send_to(text_data=json.dumps({"t": "a", "n": len(chunk)}))
    numbers = [int(n) for n in re.findall(rb"flow-(\d+)-", out)]
    assert numbers == list(range(1, FLOW_LINES + 1))
    assert feed.most <= limit + console.READ_SIZE
    await comm.disconnect()


async def test_signing_out_closes_the_serial_console(local_vps, customer):
    client = await sync_to_async(login)(customer)
    data = await _ticket(client, local_vps, "serial")
    comm, ok, _ = await _open(client, f"{data['url']}?ticket={data['ticket']}")
    assert ok
    await comm.send_to(text_data=json.dumps({"t": "i", "d": "echo still-$((40+2))\n"}))
    assert "still-42" in await read_until(comm, "still-42", timeout=30)
    await sync_to_async(client.post)("/accounts/logout/")
    assert await _closed_with(comm) == 4001
    await comm.disconnect()
    actions = [a for a, _ in await _actions()]
    assert "vps.console.close" in actions and "user.logout" in actions


async def test_vnc_reaches_the_guests_vnc_server(local_vps, customer):
    client = await sync_to_async(login)(customer)
    data = await _ticket(client, local_vps, "vnc")
    assert data["password"] == VNC_PASSWORD  # for noVNC, in the POST's answer only
    comm, ok, subprotocol = await _open(
        client, f"{data['url']}?ticket={data['ticket']}", subprotocols=["binary"]
    )
    assert ok and subprotocol == "binary"
    greeting = await _read_bytes(comm, 12)
    assert greeting.startswith(b"RFB 003.00") and greeting.endswith(b"\n")
    await comm.send_to(bytes_data=b"RFB 003.008\n")
    types = await _read_bytes(comm, 2)
    assert types[0] >= 1 and 2 in types[1:]  # VNC authentication offered: a password is set
    await comm.disconnect()
    closed = [c for a, c in await _actions() if a == "vps.console.close"][-1]
    assert closed["kind"] == ["vnc", None] and closed["bytes_in"][1] == 12


async def test_vnc_of_a_remote_hypervisor_goes_through_ssh(
    guest, ssh_server, customer, monkeypatch
):
    """A qemu+libssh hypervisor: the screen is reached through the server's SSH connection
    (a direct-tcpip channel to its loopback). Only the port lookup is given: libvirt over
    libssh would look for the system libvirtd, while this test's daemon has its own socket."""
    from vps import console

    graphics = ET.fromstring(guest["dom"].XMLDesc(0)).find("devices/graphics")  # noqa: S314
    port = int(graphics.get("port"))
    monkeypatch.setattr(console, "_vnc_port", lambda vps: port)
    hv = await sync_to_async(Hypervisor.objects.create)(
        server=ssh_server, uri="qemu+libssh:///system", storage_pool="p", network=""
    )
    vps = await sync_to_async(_vps)(customer, hv)
    client = await sync_to_async(login)(customer)
    data = await _ticket(client, vps, "vnc")
    comm, ok, _ = await _open(client, f"{data['url']}?ticket={data['ticket']}")
    assert ok
    assert (await _read_bytes(comm, 12)).startswith(b"RFB 003.00")
    await comm.disconnect()


async def test_serial_console_of_a_remote_hypervisor_goes_over_libvirt_ssh(
    guest,
    libvirt_sshd,  # noqa: F811
    customer,
    admin_user,
):
    """A qemu+libssh hypervisor end to end: the console's relay opens libvirt over libssh
    (the server's key, its pinned host key), through a real sshd, to the daemon running
    the guest; a command typed in the socket runs there and its output comes back."""
    server = await sync_to_async(Server.objects.create)(
        name="kvm-remote",
        address=SSH_HOST,
        ssh_port=libvirt_sshd.port,
        ssh_user="root",
        owner=admin_user,
        private_key=libvirt_sshd.private_key,
        public_key=libvirt_sshd.public_key,
        host_key=libvirt_sshd.host_key_line(),
    )
    hv = await sync_to_async(Hypervisor.objects.create)(
        server=server, uri="qemu+libssh:///system", storage_pool=guest["pool"], network=""
    )
    vps = await sync_to_async(_vps)(customer, hv)
    client = await sync_to_async(login)(customer)
    data = await _ticket(client, vps, "serial")
    comm, ok, _ = await _open(client, f"{data['url']}?ticket={data['ticket']}")
    assert ok
    await comm.send_to(text_data=json.dumps({"t": "i", "d": "echo remote-$((30+12))\n"}))
    assert "remote-42" in await read_until(comm, "remote-42", timeout=30)
    await comm.disconnect()
    actions = [a for a, _ in await _actions()]
    assert actions.count("vps.console.open") == actions.count("vps.console.close") == 1


async def test_a_remote_hypervisor_with_another_host_key_opens_no_console(
    guest,
    libvirt_sshd,  # noqa: F811
    customer,
    admin_user,
):
    """libvirt's libssh transport is held to the pinned host key: another key refuses."""
    from servers.transport import generate_keypair

    other = generate_keypair("not-the-host")[1]
    server = await sync_to_async(Server.objects.create)(
        name="kvm-spoofed",
        address=SSH_HOST,
        ssh_port=libvirt_sshd.port,
        ssh_user="root",
        owner=admin_user,
        private_key=libvirt_sshd.private_key,
        public_key=libvirt_sshd.public_key,
        host_key=" ".join(other.split()[:2]),
    )
    hv = await sync_to_async(Hypervisor.objects.create)(
        server=server, uri="qemu+libssh:///system", storage_pool=guest["pool"], network=""
    )
    vps = await sync_to_async(_vps)(customer, hv)
    client = await sync_to_async(login)(customer)
    data = await _ticket(client, vps, "serial")
    comm, ok, _ = await _open(client, f"{data['url']}?ticket={data['ticket']}")
    assert ok
    out, code = await _until_closed(comm)
    assert "Could not reach libvirt" in out and code == 4500
    await comm.disconnect()


async def test_a_console_the_hypervisor_cannot_open_closes_with_the_reason(
    customer, admin_user, tmp_path
):
    """libvirt's test driver has no consoles: the socket says why and closes (4500). The
    console's relay is a process of its own, so the domain is in a node file it opens."""
    need_libvirt()
    name = f"vps-{uuidlib.uuid4().hex}"
    node = tmp_path / "node.xml"
    node.write_text(
        f"<node><domain type='test'><name>{name}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain></node>"
    )
    hv = await sync_to_async(make_test_hypervisor)(admin_user, uri=f"test://{node}")
    vps = await sync_to_async(_vps)(customer, hv, uuid=uuidlib.UUID(hex=name[4:]))
    client = await sync_to_async(login)(customer)
    data = await _ticket(client, vps, "serial")
    comm, ok, _ = await _open(client, f"{data['url']}?ticket={data['ticket']}")
    assert ok
    out, code = await _until_closed(comm)
    assert "The console did not open" in out and code == 4500
    await comm.disconnect()
    actions = [a for a, _ in await _actions()]
    assert actions.count("vps.console.open") == actions.count("vps.console.close") == 1
