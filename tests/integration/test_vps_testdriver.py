"""The VPS lifecycle on libvirt's test driver (real libvirt, in-process): create, power
actions, rename, snapshots with the plan's limit, inventory and drift, delete, and bad
input that must leave nothing defined on the hypervisor."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core.models import LiveEvent, Operation
from core.operations import retry_operation
from tests.integration.libvirt import (
    image,  # noqa: F401 - fixture
    make_image_file,
    make_test_hypervisor,
    need_libvirt,
)
from vps import services
from vps.models import Hypervisor, IpAddress, Snapshot, Vps, VpsPlan

ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF0iz7pqOcIJyClBIytvxGYN1bGMzr6BQCmLIk9U5/nP me@laptop"
)


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


def _defined(name: str) -> bool:
    return name in [d.name() for d in _conn().listAllDomains()]


@pytest.fixture
def hv(admin_user):
    need_libvirt()
    _conn()
    hv = make_test_hypervisor(admin_user)
    services.do_save_pool(
        actor=admin_user,
        data={
            "name": "v4",
            "hypervisor": hv,
            "network": "203.0.113.0/29",
            "gateway": "203.0.113.1",
            "first": "203.0.113.2",
            "last": "203.0.113.3",
        },
    )
    return hv


@pytest.fixture
def plan(reseller):
    # The customer's reseller sells it.
    return VpsPlan.objects.create(
        owner=reseller,
        name="Small",
        vcpus=1,
        memory_mib=512,
        disk_gib=5,
        ip_count=1,
        ipv6=False,
        snapshot_limit=1,
    )


@pytest.fixture
def run(q_sync, django_capture_on_commit_callbacks):
    """Call a service; its Operations run inline when the transaction commits."""

    def call(func, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return call


def _last_op(vps) -> Operation:
    return Operation.objects.filter(target_id=str(vps.uuid)).latest("created_at")


def test_whole_lifecycle(run, settings, admin_user, customer, hv, plan, image):  # noqa: F811
    settings.PANEL_VPS_SHUTDOWN_TIMEOUT = 0.5
    key = services.do_save_ssh_key(actor=customer, data={"name": "k", "public_key": ED25519})
    vps = run(
        services.do_create_vps,
        actor=customer,
        data={"hostname": "web1", "plan": plan, "image": image, "ssh_keys": [key]},
    )
    op = _last_op(vps)
    assert op.state == "succeeded", op.error_detail or op.error
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.hypervisor == hv
    assert list(vps.addresses.values_list("address", flat=True)) == ["203.0.113.2"]
    dom = _conn().lookupByName(vps.domain_name)
    assert dom.isActive() and dom.info()[3] == 1
    pool = _conn().storagePoolLookupByName("default-pool")
    assert {vps.disk_volume, vps.seed_volume} <= set(pool.listVolumes())
    assert pool.storageVolLookupByName(vps.disk_volume).info()[1] == 5 << 30

    for action, state in [
        ("suspend", "paused"),
        ("resume", "running"),
        ("shutdown", "stopped"),
        ("start", "running"),
        ("reboot", "running"),
        ("force_off", "stopped"),
    ]:
        run(services.do_power, vps, actor=customer, action=action)
        assert _last_op(vps).state == "succeeded", action
        vps.refresh_from_db()
        assert vps.state == state, action

    snap = run(services.do_create_snapshot, vps, actor=customer, data={"name": "before"})
    snap.refresh_from_db()
    assert snap.state == Snapshot.State.READY
    assert _conn().lookupByName(vps.domain_name).snapshotListNames() == ["before"]
    with pytest.raises(ValidationError, match="at most 1"):
        run(services.do_create_snapshot, vps, actor=customer, data={"name": "second"})
    run(services.do_revert_snapshot, snap, actor=customer)
    assert _last_op(vps).state == "succeeded"
    run(services.do_delete_snapshot, snap, actor=customer)
    assert not Snapshot.objects.exists()
    assert _conn().lookupByName(vps.domain_name).snapshotListNames() == []

    run(services.do_update_vps, vps, actor=customer, data={"hostname": "web2"})
    assert _last_op(vps).state == "succeeded"

    # Changed outside the panel: shown as drift by the next inventory.
    dom = _conn().lookupByName(vps.domain_name)
    dom.setMaxMemory(256 * 1024)
    run(services.start_refresh, hv, actor=admin_user)
    hv.refresh_from_db()
    vps.refresh_from_db()
    assert hv.status == Hypervisor.Status.ONLINE and hv.cpus > 0 and hv.storage_gib == 100
    assert "memory 256 MiB" in vps.drift
    # Open pages hear of what the inventory found (no lifecycle event says it).
    found = LiveEvent.objects.filter(key=vps.uuid.hex).latest("id")
    assert found.data == {"state": vps.state, "source": "inventory"}
    assert found.owner_id == customer.pk

    run(services.do_delete_vps, vps, actor=customer)
    vps.refresh_from_db()
    assert vps.state == Vps.State.DELETED
    assert not _defined(vps.domain_name)
    assert vps.disk_volume not in _conn().storagePoolLookupByName("default-pool").listVolumes()
    assert not IpAddress.objects.exists()


def test_a_create_whose_libvirt_daemon_is_down_fails_and_leaves_no_vps_creating(
    run,  # noqa: F811
    tmp_path,
    customer,
    hv,  # noqa: F811
    plan,  # noqa: F811
    image,  # noqa: F811
):
    """The hypervisor's daemon is not there (its socket answers nothing): the Operation
    fails with libvirt's reason and the VPS shows the error, never stays "creating". Once
    libvirt answers again, retrying the Operation creates the VPS."""
    hv.uri = f"qemu:///system?socket={tmp_path}/libvirt-sock"
    hv.save(update_fields=["uri"])
    vps = run(
        services.do_create_vps,
        actor=customer,
        data={"hostname": "web1", "plan": plan, "image": image},
    )
    op = _last_op(vps)
    assert op.state == "failed" and "Could not reach libvirt" in op.error
    vps.refresh_from_db()
    assert vps.state == Vps.State.ERROR and "Could not reach libvirt" in vps.state_message

    hv.uri = "test:///default"  # the daemon is back
    hv.save(update_fields=["uri"])
    retried = run(retry_operation, op, actor=customer)
    retried.refresh_from_db()
    assert retried.state == "succeeded", retried.error_detail or retried.error
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.vnc_password
    assert _conn().lookupByName(vps.domain_name).isActive()
    # A VPS that ran is never created over by retrying an old create.
    vps.state = Vps.State.ERROR
    vps.save(update_fields=["state"])
    again = run(retry_operation, op, actor=customer)
    again.refresh_from_db()
    assert again.state == "failed" and "not being created" in again.error
    assert _conn().lookupByName(vps.domain_name).isActive()


def test_bad_input_leaves_nothing_defined(run, tmp_path, admin_user, customer, hv, plan, image):  # noqa: F811
    before = {d.name() for d in _conn().listAllDomains()}
    # An image with a backing file, an unknown format.
    base = make_image_file(tmp_path / "base.qcow2")
    child = make_image_file(tmp_path / "child.qcow2", backing=base)
    with child.open("rb") as f, pytest.raises(ValidationError, match="backing file"):
        services.do_create_image(actor=admin_user, data={"name": "Child"}, upload=f)
    vmdk = make_image_file(tmp_path / "x.vmdk", fmt="vmdk")
    with vmdk.open("rb") as f, pytest.raises(ValidationError, match="qcow2 or raw"):
        services.do_create_image(actor=admin_user, data={"name": "Vmdk"}, upload=f)
    # A plan over every hypervisor's capacity.
    huge = VpsPlan.objects.create(name="Huge", vcpus=200, memory_mib=512, disk_gib=5)
    with pytest.raises(ValidationError, match="No room"):
        run(
            services.do_create_vps,
            actor=admin_user,
            data={"hostname": "big", "plan": huge, "image": image},
        )
    # A malformed SSH key.
    with pytest.raises(ValidationError):
        services.do_save_ssh_key(
            actor=customer, data={"name": "k", "public_key": "ssh-ed25519 AAAA"}
        )
    # An exhausted pool: two addresses, the third VPS is refused.
    for n in range(2):
        run(
            services.do_create_vps,
            actor=customer,
            data={"hostname": f"v{n}", "plan": plan, "image": image},
        )
    with pytest.raises(ValidationError, match="No free IPv4"):
        run(
            services.do_create_vps,
            actor=customer,
            data={"hostname": "v3", "plan": plan, "image": image},
        )
    assert Vps.objects.count() == 2
    made = {d.name() for d in _conn().listAllDomains()} - before
    assert made == {v.domain_name for v in Vps.objects.all()}
    for vps in Vps.objects.all():
        run(services.do_delete_vps, vps, actor=customer)
    assert {d.name() for d in _conn().listAllDomains()} == before


def _make_running(run, customer, plan, image, hostname="web1"):  # noqa: F811
    vps = run(
        services.do_create_vps,
        actor=customer,
        data={"hostname": hostname, "plan": plan, "image": image},
    )
    assert _last_op(vps).state == "succeeded", _last_op(vps).error
    vps.refresh_from_db()
    return vps


def test_reinstall_replaces_disk_and_deletes_snapshots(run, customer, hv, plan, image):  # noqa: F811
    from core.models import AuditEntry

    vps = _make_running(run, customer, plan, image)
    run(services.do_create_snapshot, vps, actor=customer, data={"name": "old"})
    pool = _conn().storagePoolLookupByName("default-pool")
    dom_uuid = _conn().lookupByName(vps.domain_name).UUIDString()

    op = run(services.do_reinstall_vps, vps, actor=customer, data={})
    op.refresh_from_db()
    assert op.state == "succeeded", op.error_detail or op.error
    assert op.progress == 100
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.image == image
    dom = _conn().lookupByName(vps.domain_name)
    assert dom.UUIDString() == dom_uuid and dom.isActive()  # same domain, fresh disk
    assert dom.snapshotListNames() == [] and not vps.snapshots.exists()
    pool.refresh(0)
    disk = pool.storageVolLookupByName(vps.disk_volume)
    assert disk.info()[1] == 5 << 30
    assert vps.seed_volume in pool.listVolumes()
    assert op.lines.filter(message__contains="A fresh disk").exists()
    assert AuditEntry.objects.filter(action="vps.reinstall", actor_id=customer.pk).exists()


def test_reinstall_refuses_hidden_image_and_busy_vps(run, customer, hv, plan, image):  # noqa: F811
    vps = _make_running(run, customer, plan, image)
    image.active = False
    image.save()
    other = type(image).objects.create(
        name="Hidden", path=image.path, format="qcow2", sha256="1" * 64, active=False
    )
    with pytest.raises(ValidationError, match="offered image"):
        services.do_reinstall_vps(vps, actor=customer, data={"image": other})
    # Its own image stays allowed even when no longer offered.
    assert run(services.do_reinstall_vps, vps, actor=customer, data={}).pk
    Vps.objects.filter(pk=vps.pk).update(state=Vps.State.DELETING)
    vps.refresh_from_db()
    with pytest.raises(ValidationError, match="being deleted"):
        services.do_reinstall_vps(vps, actor=customer, data={})


def test_resize_sets_vcpus_memory_and_restarts(run, settings, reseller, customer, hv, plan, image):  # noqa: F811
    from core.models import AuditEntry

    settings.PANEL_VPS_SHUTDOWN_TIMEOUT = 0.5
    vps = _make_running(run, customer, plan, image)
    bigger = VpsPlan.objects.create(
        owner=reseller, name="Medium", vcpus=2, memory_mib=1024, disk_gib=8, ipv6=False
    )
    op = run(services.do_resize_vps, vps, actor=customer, data={"plan": bigger})
    op.refresh_from_db()
    assert op.state == "succeeded", op.error_detail or op.error
    vps.refresh_from_db()
    assert (vps.plan, vps.vcpus, vps.memory_mib, vps.disk_gib) == (bigger, 2, 1024, 8)
    assert vps.state == Vps.State.RUNNING and not vps.drift
    dom = _conn().lookupByName(vps.domain_name)
    assert dom.isActive() and dom.info()[3] == 2 and dom.maxMemory() == 1024 * 1024
    entry = AuditEntry.objects.get(action="vps.resize")
    assert entry.changes["vcpus"] == [1, 2]
    # The next inventory sees no drift.
    run(services.start_refresh, hv)
    vps.refresh_from_db()
    assert vps.drift == ""


def test_resize_never_shrinks_the_disk_nor_overfills(run, reseller, customer, hv, plan, image):  # noqa: F811
    vps = _make_running(run, customer, plan, image)
    smaller = VpsPlan.objects.create(
        owner=reseller, name="Tiny disk", vcpus=1, memory_mib=256, disk_gib=2, ipv6=False
    )
    with pytest.raises(ValidationError, match="never shrunk") as err:
        services.do_resize_vps(vps, actor=customer, data={"plan": smaller})
    assert "plan" in err.value.message_dict
    huge = VpsPlan.objects.create(
        owner=reseller, name="Huge", vcpus=200, memory_mib=512, disk_gib=5, ipv6=False
    )
    with pytest.raises(ValidationError, match="No room"):
        services.do_resize_vps(vps, actor=customer, data={"plan": huge})
    foreign = VpsPlan.objects.create(name="Provider's", vcpus=1, memory_mib=512, disk_gib=9)
    with pytest.raises(ValidationError, match="your plans"):
        services.do_resize_vps(vps, actor=customer, data={"plan": foreign})
    vps.refresh_from_db()
    assert vps.plan == plan and vps.disk_gib == 5
    assert Operation.objects.filter(kind="vps.resize").count() == 0


def test_image_copy_operation_on_the_test_driver(run, tmp_path, settings, admin_user, hv):
    settings.VAR_DIR = tmp_path
    src = make_image_file(tmp_path / "img.qcow2", size="2G")
    with src.open("rb") as f:
        image = run(services.do_create_image, actor=admin_user, data={"name": "Big"}, upload=f)
    op = Operation.objects.get(kind="vps.image_upload")
    assert op.state == "succeeded" and op.progress == 100, op.error
    assert "holds no data" in op.message
    pool = _conn().storagePoolLookupByName("default-pool")
    assert pool.storageVolLookupByName(image.volume_name).info()[1] == 2 << 30
    # Copying again finds it there.
    run(services.do_copy_image, image, actor=admin_user)
    again = Operation.objects.filter(kind="vps.image_upload").latest("created_at")
    assert again.state == "succeeded" and "already" in again.message
    pool.storageVolLookupByName(image.volume_name).delete(0)


def test_location_choice_in_the_wizard_and_the_api(
    run,
    django_capture_on_commit_callbacks,
    admin_user,
    customer,
    hv,
    plan,
    image,  # noqa: F811
):
    """Customers choose among locations with room for their plans; the VPS lands on a
    hypervisor of that location; a full or unknown location is a clear error."""
    from tests.conftest import login

    hv.server.location = "Amsterdam"
    hv.server.save()
    full = make_test_hypervisor(admin_user, cpus=0)  # inventoried with no room left
    full.server.location = "Berlin"
    full.server.save()
    elsewhere = make_test_hypervisor(admin_user)  # room, but no location named
    assert services.locations_with_room([plan]) == ["Amsterdam"]

    client = login(customer)
    form = client.get("/vps/new/").content.decode()
    assert 'value="Amsterdam"' in form and "Berlin" not in form
    answer = client.post(
        "/vps/new/",
        {"hostname": "berlin1", "plan": plan.pk, "image": image.pk, "location": "Berlin"},
    )
    assert answer.status_code == 400 and "Select a valid choice" in answer.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/vps/new/",
            {"hostname": "ams1", "plan": plan.pk, "image": image.pk, "location": "Amsterdam"},
        )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    vps = Vps.objects.get(hostname="ams1")
    assert vps.hypervisor == hv and _last_op(vps).state == "succeeded", _last_op(vps).error
    assert _defined(vps.domain_name)
    assert b'data-testid="vps-location">Amsterdam<' in client.get(f"/vps/{vps.uuid}/").content

    # The API: the same rule, errors named by field; the location is answered back.
    def post(location):
        return client.post(
            "/api/v1/vps/",
            {
                "hostname": "api1",
                "plan": str(plan.uuid),
                "image": str(image.uuid),
                "location": location,
            },
            content_type="application/json",
        )

    answer = post("Berlin")
    assert answer.status_code == 400 and "No room" in answer.json()["location"][0]
    answer = post("Nowhere")
    assert answer.status_code == 400
    assert answer.json()["location"] == ["Choose one of the offered locations."]
    assert Vps.objects.count() == 1
    listed = client.get("/api/v1/vps/").json()["results"]
    assert [row["location"] for row in listed] == ["Amsterdam"]
    # An administrator naming a hypervisor outside the asked location is refused.
    with pytest.raises(ValidationError, match="is not in Amsterdam"):
        services.do_create_vps(
            actor=admin_user,
            data={
                "hostname": "x",
                "plan": plan,
                "image": image,
                "hypervisor": elsewhere,
                "location": "Amsterdam",
            },
        )
    run(services.do_delete_vps, vps, actor=customer)
