"""A hypervisor reached as a remote one: ``qemu+libssh://`` through a real loopback sshd
(the server's key, its pinned host key) to the private libvirtd, which runs the guests
under TCG. The inventory, a VPS's whole lifecycle and a statistics round all go over that
SSH channel, as they would to a remote host (tests/integration/libvirt.py: the sshd's key
is held to a forced command joining the channel to the daemon's socket, what
virt-ssh-helper does with the system one)."""

from __future__ import annotations

import pytest

from core.models import Operation
from servers.models import Server
from tests.integration.conftest import SSH_HOST
from tests.integration.libvirt import (  # noqa: F401 - fixtures
    libvirt_sshd,
    libvirtd,
    make_image_file,
)
from vps import services
from vps.models import Hypervisor, ImageCopy, Snapshot, Vps, VpsPlan, VpsSample
from vps.stats import collect_round

pytestmark = pytest.mark.integration


@pytest.fixture
def run(q_sync, django_capture_on_commit_callbacks):
    def call(func, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return call


def _server(sshd, owner, name: str, host_key: str) -> Server:
    return Server.objects.create(
        name=name,
        address=SSH_HOST,
        ssh_port=sshd.port,
        ssh_user="root",
        owner=owner,
        private_key=sshd.private_key,
        public_key=sshd.public_key,
        host_key=host_key,
    )


def _last_op(target) -> Operation:
    return Operation.objects.filter(target_id=str(target.uuid)).latest("created_at")


def test_inventory_lifecycle_and_stats_over_libssh(
    libvirtd,  # noqa: F811
    libvirt_sshd,  # noqa: F811
    run,
    tmp_path,
    settings,
    admin_user,
):
    settings.VAR_DIR = tmp_path
    settings.PANEL_VPS_SHUTDOWN_TIMEOUT = 1  # the blank disk boots nothing answering ACPI
    server = _server(libvirt_sshd, admin_user, "kvm-remote", libvirt_sshd.host_key_line())
    hv = run(
        services.do_save_hypervisor,
        actor=admin_user,
        data={
            "server": server,
            "uri": "qemu+libssh:///system",
            "storage_pool": libvirtd["pool"],
            "network": "",
        },
    )
    refresh = _last_op(hv)
    assert refresh.kind == "vps.refresh" and refresh.state == "succeeded", refresh.error
    hv.refresh_from_db()
    conn = libvirtd["conn"]  # the same daemon, locally, to check what SSH did
    node = conn.getInfo()
    assert hv.status == Hypervisor.Status.ONLINE and hv.last_error == ""
    assert (hv.cpus, hv.memory_mib) == (node[2], node[1])
    pool = conn.storagePoolLookupByName(libvirtd["pool"])
    assert hv.storage_gib == pool.info()[1] >> 30 and hv.storage_gib > 0
    assert libvirtd["pool"] in [p["name"] for p in hv.pools]

    # Lifecycle: the image is streamed over SSH into the pool, the disk cloned and grown,
    # the seed uploaded, the domain defined and started.
    src = make_image_file(tmp_path / "tiny.qcow2", size="64M")
    with src.open("rb") as f:
        image = run(services.do_create_image, actor=admin_user, data={"name": "TinyR"}, upload=f)
    copied = Operation.objects.get(kind="vps.image_upload", target_id=str(image.uuid))
    assert copied.state == "succeeded", copied.error_detail or copied.error
    assert ImageCopy.objects.get(image=image, hypervisor=hv).state == ImageCopy.State.READY
    plan = VpsPlan.objects.create(
        name="NanoR",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
        ip_count=0,
        ipv6=False,
        snapshot_limit=1,
    )
    vps = run(
        services.do_create_vps,
        actor=admin_user,
        data={"hostname": "remote1", "plan": plan, "image": image, "hypervisor": hv},
    )
    op = _last_op(vps)
    assert op.state == "succeeded", op.error_detail or op.error
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.vnc_port
    dom = conn.lookupByName(vps.domain_name)
    assert dom.isActive() and "<title>remote1</title>" in dom.XMLDesc(0)
    pool.refresh(0)
    assert pool.storageVolLookupByName(vps.disk_volume).info()[1] == 1 << 30

    # The inventory over SSH lists the VPS's domain as its own, and the stats round reads
    # it with one getAllDomainStats over the same transport.
    run(services.start_refresh, hv, actor=admin_user)
    assert _last_op(hv).state == "succeeded"
    hv.refresh_from_db()
    assert vps.domain_name not in hv.foreign_domains
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.drift == "" and vps.inventory_at
    # The round's threads hold their own database connections: the hypervisor comes with
    # its server loaded (as the schedule's query loads it), the test's rows being uncommitted.
    loaded = Hypervisor.objects.select_related("server").get(pk=hv.pk)
    assert collect_round([loaded]).samples == 1
    assert collect_round([loaded]).samples == 1
    first, second = VpsSample.objects.filter(vps=vps).order_by("at")
    assert "cpu" not in first.values and 0 <= second.values["cpu"] <= 100
    assert second.values["mem_total"] == 128 << 20 and second.values["mem_used"] > 0

    snap = run(services.do_create_snapshot, vps, actor=admin_user, data={"name": "base"})
    snap.refresh_from_db()
    assert snap.state == Snapshot.State.READY and dom.snapshotListNames() == ["base"]
    run(services.do_revert_snapshot, snap, actor=admin_user)
    assert _last_op(vps).state == "succeeded"

    run(services.do_power, vps, actor=admin_user, action="shutdown")
    op = _last_op(vps)
    assert op.state == "succeeded", op.error_detail or op.error
    assert op.lines.filter(message__contains="forced off").exists()
    vps.refresh_from_db()
    assert vps.state == Vps.State.STOPPED and not dom.isActive()
    run(services.do_power, vps, actor=admin_user, action="start")
    assert _last_op(vps).state == "succeeded"
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and dom.isActive()
    run(services.do_power, vps, actor=admin_user, action="force_off")
    assert _last_op(vps).state == "succeeded"
    vps.refresh_from_db()
    assert vps.state == Vps.State.STOPPED and not dom.isActive()

    run(services.do_delete_vps, vps, actor=admin_user)
    assert _last_op(vps).state == "succeeded"
    assert vps.domain_name not in [d.name() for d in conn.listAllDomains()]
    pool.refresh(0)
    assert not {vps.disk_volume, vps.seed_volume} & set(pool.listVolumes())
    pool.storageVolLookupByName(image.volume_name).delete(0)


def test_a_wrong_pinned_host_key_reads_no_inventory(
    libvirtd,  # noqa: F811
    libvirt_sshd,  # noqa: F811
    run,
    admin_user,
):
    """libvirt's libssh transport is held to the pinned host key: the sshd's real one is
    refused, the hypervisor is offline with the reason, and nothing was read."""
    from servers.transport import generate_keypair

    other = " ".join(generate_keypair("not-the-host")[1].split()[:2])
    server = _server(libvirt_sshd, admin_user, "kvm-spoofed", other)
    hv = run(
        services.do_save_hypervisor,
        actor=admin_user,
        data={
            "server": server,
            "uri": "qemu+libssh:///system",
            "storage_pool": libvirtd["pool"],
            "network": "",
        },
    )
    op = _last_op(hv)
    assert op.state == "failed" and "Could not reach libvirt" in op.error
    hv.refresh_from_db()
    assert hv.status == Hypervisor.Status.OFFLINE and "Could not reach libvirt" in hv.last_error
    assert hv.cpus == 0 and hv.pools == []
