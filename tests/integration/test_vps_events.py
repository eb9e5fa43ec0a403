"""libvirt lifecycle events on the test driver: a domain stopped, started or paused outside
the panel changes the stored state and sends the live event; VPSes the panel is busy with
(or suspended at expiry) are left alone; a lost connection is reopened after a backoff
that grows while the hypervisor cannot be reached."""

from __future__ import annotations

import time

import pytest

from core.models import LiveEvent
from tests.integration.libvirt import image  # noqa: F401 - fixture
from tests.integration.test_vps_testdriver import (  # noqa: F401 - fixtures
    _close_held,
    _conn,
    hv,
    plan,
    run,
)
from vps import listener as lst
from vps import services
from vps.models import Hypervisor, Vps

# Committed rows: libvirt's default event loop may already be run by another thread of this
# process (the VPS console's, when a console test ran before on this worker), which then
# handles the events with its own connection. (Starting that thread here would leave it
# running when a later browser test forks its live server: a fork taken while the thread
# holds libvirt's loop lock gives a server whose consoles never receive a byte.)
pytestmark = pytest.mark.django_db(transaction=True)


def _until(listener, vps, state, seconds=10.0) -> bool:
    """Run the event loop until the stored state is ``state`` (or time is up)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lst.run_loop_once()
        vps.refresh_from_db()
        if vps.state == state:
            return True
    return False


@pytest.fixture
def running(run, customer, hv, plan, image):  # noqa: F811
    vps = run(
        services.do_create_vps,
        actor=customer,
        data={"hostname": "web1", "plan": plan, "image": image},
    )
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING
    return vps


@pytest.fixture
def listening(hv):  # noqa: F811
    lst.ensure_event_loop()
    listener = lst.HypervisorListener(hv, backoff=0.05)
    assert listener.ensure_connected()
    yield listener
    listener.close()


def test_outside_changes_reach_the_stored_state(
    running, listening, django_capture_on_commit_callbacks
):
    vps = running
    dom = _conn().lookupByName(vps.domain_name)
    with django_capture_on_commit_callbacks(execute=True):
        dom.destroy()  # outside the panel
        assert _until(listening, vps, Vps.State.STOPPED)
    assert LiveEvent.objects.filter(
        topic="vps.vps", key=vps.uuid.hex, data__source="libvirt"
    ).exists()
    dom.create()
    assert _until(listening, vps, Vps.State.RUNNING)
    dom.suspend()
    assert _until(listening, vps, Vps.State.PAUSED)
    dom.resume()
    assert _until(listening, vps, Vps.State.RUNNING)
    assert listening.applied == 4


def test_busy_or_suspended_vpses_are_left_alone(running, listening):
    vps = running
    Vps.objects.filter(pk=vps.pk).update(state=Vps.State.SUSPENDED)
    dom = _conn().lookupByName(vps.domain_name)
    dom.destroy()
    assert not _until(listening, vps, Vps.State.STOPPED, seconds=1.5)
    assert vps.state == Vps.State.SUSPENDED and listening.applied == 0
    # A domain the panel did not make is ignored too.
    assert lst.apply_event(vps.hypervisor_id, "test", "STOPPED") is None


def test_a_lost_connection_is_reopened(running, listening):
    vps = running
    listening.conn.close()  # the connection goes away under the listener
    assert not listening.alive()
    start = time.monotonic()
    assert not listening.ensure_connected(start)  # waits its backoff first
    assert listening.ensure_connected(start + 1)
    _conn().lookupByName(vps.domain_name).destroy()
    assert _until(listening, vps, Vps.State.STOPPED)


def test_backoff_grows_while_unreachable(admin_user, hv):  # noqa: F811
    Hypervisor.objects.filter(pk=hv.pk).update(uri="test:///nonexistent/node.xml")
    hv.refresh_from_db()
    listener = lst.HypervisorListener(hv, backoff=1, max_backoff=4)
    now = 1000.0
    waits = []
    for _ in range(4):
        assert not listener.ensure_connected(now)
        waits.append(listener.next_attempt - now)
        assert not listener.ensure_connected(now + waits[-1] / 2)  # too soon: not tried
        now = listener.next_attempt
    assert waits == [1, 2, 4, 4] and listener.failures == 4
