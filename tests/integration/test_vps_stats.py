"""VPS statistics rounds against libvirt's test driver (real libvirt, in-process): samples
with sane values, CPU % from the second round, a hypervisor that hangs or fails delays and
spoils no other, and a round's samples reach the VPS page's socket (and nobody else's)."""

from __future__ import annotations

import socket
import threading

import pytest
from asgiref.sync import sync_to_async

from tests.conftest import in_thread, login
from tests.integration.libvirt import make_test_hypervisor, need_libvirt
from tests.unit.test_live import connect, open_ready, receive_until
from vps import libvirt_adapter as lv
from vps.models import HypervisorStats, Vps, VpsPlan, VpsSample
from vps.stats import SAMPLE_TOPIC, collect_round

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF0iz7pqOcIJyClBIytvxGYN1bGMzr6BQCmLIk9U5/nP"
_held: list = []


def _conn():
    """The shared test driver lives while one connection to it is open: keep one."""
    import libvirt

    if not _held:
        _held.append(libvirt.open("test:///default"))
    return _held[0]


@pytest.fixture(scope="module", autouse=True)
def _close_held():
    yield
    while _held:
        _held.pop().close()


def _running_vps(hv, owner, vcpus: int = 1) -> Vps:
    plan = VpsPlan.objects.create(name=f"p-{hv.pk}", vcpus=vcpus, memory_mib=512, disk_gib=5)
    vps = Vps.objects.create(
        hostname="stats1",
        owner=owner,
        plan=plan,
        hypervisor=hv,
        vcpus=vcpus,
        memory_mib=512,
        state=Vps.State.RUNNING,
    )
    xml = lv.domain_xml(
        lv.DomainSpec(
            name=vps.domain_name,
            title=vps.hostname,
            vcpus=vcpus,
            memory_mib=512,
            disk_path=f"/guest/{vps.disk_volume}",
            disk_format="qcow2",
            seed_path="",
            network="default",
            vnc_password="",
            mac=lv.new_mac(),
            test_driver=True,
        )
    )
    dom = _conn().defineXML(xml)
    dom.create()
    return vps


def _remove(vps: Vps) -> None:
    dom = _conn().lookupByName(vps.domain_name)
    if dom.isActive():
        dom.destroy()
    dom.undefine()


@pytest.fixture
def hv(admin_user):
    need_libvirt()
    _conn()
    return make_test_hypervisor(admin_user)


@pytest.fixture
def vps(hv, customer):
    vps = _running_vps(hv, customer)
    yield vps
    _remove(vps)


@pytest.mark.django_db
def test_rounds_store_sane_samples_and_cpu_from_the_second(hv, vps):
    first = collect_round([hv])
    assert first.samples == 1 and not first.failed
    sample = VpsSample.objects.get(vps=vps)
    values = sample.values
    assert values["vcpus"] == 1
    assert values["mem_total"] == 512 * 1024 * 1024
    assert 0 < values["mem_used"] <= values["mem_total"]
    assert values["mem_used"] + values["mem_available"] == values["mem_total"]
    assert 0 < values["mem_pct"] <= 100
    assert "cpu" not in values  # no previous counters yet
    state = HypervisorStats.objects.get(hypervisor=hv)
    assert vps.domain_name in state.counters and state.failures == 0

    second = collect_round([hv])
    assert second.samples == 1
    latest = VpsSample.objects.filter(vps=vps).latest("at")
    assert latest.at > sample.at
    assert 0 < latest.values["cpu"] <= 100


@pytest.mark.django_db
def test_a_stopped_domain_gets_no_sample(hv, vps):
    _conn().lookupByName(vps.domain_name).destroy()
    result = collect_round([hv])
    assert result.samples == 0 and not result.failed
    assert not VpsSample.objects.exists()


@pytest.fixture
def silent_listener():
    """A TCP port that accepts and then never says a word (a hung hypervisor); closed at the
    end, which ends the libvirt client still waiting on it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    srv.close()


@pytest.mark.django_db
def test_a_hung_and_a_broken_hypervisor_delay_no_other(
    settings, admin_user, hv, vps, silent_listener
):
    settings.PANEL_MONITORING_TIMEOUT = 2
    settings.PANEL_MONITORING_WORKERS = 4
    hung = make_test_hypervisor(admin_user, uri="qemu+libssh:///system")
    hung.server.address, hung.server.ssh_port = "127.0.0.1", silent_listener
    hung.server.host_key = ED25519
    hung.server.private_key = "not a key"
    hung.server.save()
    broken = make_test_hypervisor(admin_user, uri="qemu+libssh:///system")  # no host key pinned
    result = collect_round([hung, broken, hv])
    assert result.samples == 1 and VpsSample.objects.filter(vps=vps).count() == 1
    assert set(result.failed) == {str(hung), str(broken)}
    assert "host key is not pinned" in result.failed[str(broken)]
    assert result.failed[str(hung)] == "no answer within 2s"  # the round's deadline
    states = {s.hypervisor_id: s for s in HypervisorStats.objects.all()}
    assert states[hung.pk].failures == 1 and states[broken.pk].failures == 1
    assert states[hv.pk].failures == 0


@pytest.mark.django_db(transaction=True)
async def test_a_round_reaches_the_vps_page_socket_and_no_outsider(customer, reseller, mallory):
    db = sync_to_async
    need_libvirt()
    await db(_conn)()
    from accounts.models import User

    admin = await db(User.objects.filter(role="admin").first)()
    if admin is None:
        from tests.conftest import make_user

        admin = await db(make_user)("stats-admin@example.com", "admin")
    hv = await db(make_test_hypervisor)(admin)
    vps = await db(_running_vps)(hv, customer)
    try:
        page = await db(lambda: login(customer).get(vps.get_absolute_url()).content.decode())()
        assert "data-metrics-chart" in page and f"/api/v1/vps/{vps.uuid}/metrics/" in page
        assert f"/ws/live/vps/{vps.uuid}/metrics/" in page

        for user in (customer, reseller):
            client = await db(login)(user)
            stream, _ = await open_ready(f"/ws/live/vps/{vps.uuid}/metrics/?format=json", client)
            in_thread(collect_round, [hv]).join(30)
            got = await receive_until(
                stream, lambda msgs: any(m.get("model") == SAMPLE_TOPIC for m in msgs)
            )
            event = next(m for m in got if m.get("model") == SAMPLE_TOPIC)
            assert event["key"] == vps.uuid.hex
            assert 0 < event["data"]["values"]["mem_pct"] <= 100
            await stream.disconnect()

        outsider = await db(login)(mallory)
        _comm, ok, code = await connect(f"/ws/live/vps/{vps.uuid}/metrics/", outsider)
        assert not ok and code == 4404
    finally:
        await db(_remove)(vps)
