"""``manage.py vps_events`` as a whole: the command runs as a process of its own (as in
production) against a real libvirtd (tests/integration/libvirt.py). A domain paused and
resumed outside the panel moves the VPS's stored state and sends its live event (the
``LiveEvent`` row pages are fed from); libvirtd restarted under it, the listener
reconnects by itself and follows the next change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid as uuidlib
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from core.models import LiveEvent
from servers.models import Server
from tests.conftest import wait_until
from tests.integration.libvirt import libvirtd, start_libvirtd, stop_libvirtd  # noqa: F401
from vps.models import Hypervisor, Vps, VpsPlan

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _domain_xml(name: str) -> str:
    # Nothing to boot: the firmware waits, which is running enough for lifecycle events.
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"
    )


def _database_url() -> str:
    """The test database, for a process of its own."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture
def running_vps(libvirtd, admin_user, customer):  # noqa: F811
    key = uuidlib.uuid4()
    dom = libvirtd["conn"].defineXML(_domain_xml(f"vps-{key.hex}"))
    dom.create()
    server = Server.objects.create(
        name="kvm-events", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin_user
    )
    hv = Hypervisor.objects.create(
        server=server,
        uri=libvirtd["uri"],
        storage_pool=libvirtd["pool"],
        network="",
        status=Hypervisor.Status.ONLINE,
    )
    plan = VpsPlan.objects.create(name="events", vcpus=1, memory_mib=32)
    vps = Vps.objects.create(
        uuid=key, hostname="evt", owner=customer, plan=plan, hypervisor=hv, state="running"
    )
    return vps


@pytest.fixture
def listener_process(tmp_path, running_vps):
    log = tmp_path / "vps_events.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - this checkout's manage.py
            [sys.executable, "manage.py", "vps_events", "--rescan", "1"],
            cwd=Path(settings.BASE_DIR),
            env={**os.environ, "DATABASE_URL": _database_url(), "PANEL_LOG_LEVEL": "INFO"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _connected(log: Path, times: int) -> bool:
    return log.read_text(errors="replace").count("listening to lifecycle events of") >= times


def _state(vps) -> str:
    return Vps.objects.values_list("state", flat=True).get(pk=vps.pk)


def _last_event(vps) -> dict | None:
    # The listener commits the row, then (on commit) the event: wait for the event itself.
    event = LiveEvent.objects.filter(key=vps.uuid.hex).order_by("-id").first()
    return event.data if event else None


def test_the_listener_process_follows_outside_changes_and_a_libvirtd_restart(
    libvirtd,  # noqa: F811
    running_vps,
    listener_process,
):
    proc, log = listener_process
    vps = running_vps
    wait_until(lambda: _connected(log, 1) or proc.poll() is not None, timeout=60)
    assert proc.poll() is None, log.read_text()
    dom = libvirtd["conn"].lookupByName(vps.domain_name)

    dom.suspend()  # outside the panel
    paused = {"state": "paused", "source": "libvirt"}
    wait_until(lambda: _last_event(vps) == paused, timeout=30)
    assert _state(vps) == Vps.State.PAUSED
    assert LiveEvent.objects.filter(key=vps.uuid.hex).latest("id").owner_id == vps.owner_id

    # The daemon goes away and comes back: the listener notices, reopens with its backoff,
    # and the next outside change is followed again (the guest kept running meanwhile).
    stop_libvirtd(libvirtd)
    start_libvirtd(libvirtd)
    wait_until(lambda: _connected(log, 2), timeout=60)
    libvirtd["conn"].lookupByName(vps.domain_name).resume()
    wait_until(lambda: _last_event(vps) == {"state": "running", "source": "libvirt"}, timeout=30)
    assert _state(vps) == Vps.State.RUNNING
    assert proc.poll() is None  # still the same process
    assert "lost the event connection" in log.read_text()
