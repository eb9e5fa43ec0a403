"""A real libvirtd with qemu under TCG: a VPS is created from a tiny image, runs and yields
real CPU counters, is snapshotted and reverted, shut down (forced after a short timeout,
since the blank disk boots nothing that answers ACPI) and deleted."""

from __future__ import annotations

import json
import subprocess

import pytest

from core.models import Operation
from servers.models import Server
from tests.integration.libvirt import libvirtd, make_image_file, need_libvirt  # noqa: F401
from vps import libvirt_adapter as lv
from vps import services
from vps.models import Hypervisor, Snapshot, Vps, VpsPlan, VpsSample
from vps.stats import collect_round


@pytest.fixture
def run(q_sync, django_capture_on_commit_callbacks):
    def call(func, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return call


def _last_op(vps) -> Operation:
    return Operation.objects.filter(target_id=str(vps.uuid)).latest("created_at")


def test_vps_on_a_real_libvirtd(libvirtd, run, tmp_path, settings, admin_user):  # noqa: F811
    settings.VAR_DIR = tmp_path
    settings.PANEL_VPS_SHUTDOWN_TIMEOUT = 1
    server = Server.objects.create(
        name="kvm1", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin_user
    )
    hv = run(
        services.do_save_hypervisor,
        actor=admin_user,
        data={
            "server": server,
            "uri": libvirtd["uri"],
            "storage_pool": libvirtd["pool"],
            "network": "",
        },
    )
    hv.refresh_from_db()
    assert hv.status == Hypervisor.Status.ONLINE and hv.cpus >= 1 and hv.storage_gib > 0
    src = make_image_file(tmp_path / "tiny.qcow2", size="64M")
    with src.open("rb") as f:
        image = services.do_create_image(actor=admin_user, data={"name": "Tiny"}, upload=f)
    plan = VpsPlan.objects.create(
        name="Nano", vcpus=1, memory_mib=128, disk_gib=1, ip_count=0, ipv6=False, snapshot_limit=2
    )
    vps = run(
        services.do_create_vps,
        actor=admin_user,
        data={"hostname": "tcg1", "plan": plan, "image": image},
    )
    op = _last_op(vps)
    assert op.state == "succeeded", op.error_detail or op.error
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.vnc_port and len(vps.vnc_password) == 8
    conn = libvirtd["conn"]
    dom = conn.lookupByName(vps.domain_name)
    assert dom.isActive()
    disk = conn.storagePoolLookupByName(libvirtd["pool"]).storageVolLookupByName(vps.disk_volume)
    assert disk.info()[1] == 1 << 30  # grown from the image's 64 MiB to the plan's disk

    with lv.connect(hv) as session:
        stats = dict(session.domain_stats())[vps.domain_name]
    assert stats["cpu.time"] > 0 and stats["balloon.maximum"] == 128 * 1024
    # Statistics rounds read the same bulk call (no fallback): real CPU %, memory and rates.
    assert collect_round([hv]).samples == 1
    assert collect_round([hv]).samples == 1
    first, second = VpsSample.objects.filter(vps=vps).order_by("at")
    assert "cpu" not in first.values and 0 <= second.values["cpu"] <= 100
    assert second.values["mem_total"] == 128 << 20 and second.values["mem_used"] > 0
    assert {"disk_read", "disk_write"} <= second.values.keys()  # user-mode net: no counters

    snap = run(services.do_create_snapshot, vps, actor=admin_user, data={"name": "base"})
    snap.refresh_from_db()
    assert snap.state == Snapshot.State.READY
    assert dom.snapshotListNames() == ["base"]
    run(services.do_revert_snapshot, snap, actor=admin_user)
    assert _last_op(vps).state == "succeeded"

    # Reinstall: the snapshot goes first, the disk is a fresh clone (no internal snapshot
    # left in the qcow2), the same domain runs again.
    disk_path = disk.path()
    op = run(services.do_reinstall_vps, vps, actor=admin_user, data={})
    op.refresh_from_db()
    assert op.state == "succeeded", op.error_detail or op.error
    assert dom.snapshotListNames() == [] and not vps.snapshots.exists()
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", disk_path],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    )
    assert "snapshots" not in info and info["virtual-size"] == 1 << 30
    assert dom.isActive()

    # Resize offline to a bigger plan: vCPUs and memory in the definition, the disk grown.
    bigger = VpsPlan.objects.create(
        name="Micro", vcpus=2, memory_mib=192, disk_gib=2, ip_count=0, ipv6=False
    )
    op = run(services.do_resize_vps, vps, actor=admin_user, data={"plan": bigger})
    op.refresh_from_db()
    assert op.state == "succeeded", op.error_detail or op.error
    dom = conn.lookupByName(vps.domain_name)
    assert dom.isActive() and dom.info()[3] == 2 and dom.maxMemory() == 192 * 1024
    pool = conn.storagePoolLookupByName(libvirtd["pool"])
    pool.refresh(0)
    assert pool.storageVolLookupByName(vps.disk_volume).info()[1] == 2 << 30
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.disk_gib == 2

    run(services.do_power, vps, actor=admin_user, action="shutdown")
    op = _last_op(vps)
    assert op.state == "succeeded", op.error_detail
    assert op.lines.filter(message__contains="forced off").exists()
    vps.refresh_from_db()
    assert vps.state == Vps.State.STOPPED and not dom.isActive()

    run(services.do_delete_vps, vps, actor=admin_user)
    assert _last_op(vps).state == "succeeded"
    assert vps.domain_name not in [d.name() for d in conn.listAllDomains()]
    pool = conn.storagePoolLookupByName(libvirtd["pool"])
    pool.refresh(0)
    assert not {vps.disk_volume, vps.seed_volume} & set(pool.listVolumes())


def test_image_copy_reports_progress_and_a_failed_copy_leaves_no_volume(
    libvirtd,  # noqa: F811
    run,
    tmp_path,
    settings,
    admin_user,
    monkeypatch,
):
    import hashlib
    import os

    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(lv, "UPLOAD_CHUNK", 1 << 20)
    server = Server.objects.create(
        name="kvm2", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin_user
    )
    Hypervisor.objects.create(
        server=server,
        uri=libvirtd["uri"],
        storage_pool=libvirtd["pool"],
        status=Hypervisor.Status.ONLINE,
    )
    data = os.urandom(6 << 20)
    src = tmp_path / "data.raw"
    src.write_bytes(data)
    with src.open("rb") as f:
        image = run(services.do_create_image, actor=admin_user, data={"name": "Data"}, upload=f)
    op = Operation.objects.get(kind="vps.image_upload", target_id=str(image.uuid))
    assert op.state == "succeeded", op.error_detail or op.error
    assert op.progress == 100 and "copied" in op.message
    sent = [line.message for line in op.lines.filter(message__contains="MiB sent")]
    assert "6 of 6 MiB sent" in sent and len(sent) >= 3  # chunk by chunk
    pool = libvirtd["conn"].storagePoolLookupByName(libvirtd["pool"])
    pool.refresh(0)
    vol = pool.storageVolLookupByName(image.volume_name)
    assert vol.info()[1] == 6 << 20
    with open(vol.path(), "rb") as copied:
        assert hashlib.sha256(copied.read()).hexdigest() == image.sha256

    # The image file is cut short after it was checked: the copy fails part-way and
    # leaves no half volume in the pool.
    vol.delete(0)
    with open(image.path, "r+b") as f:
        f.truncate(5 << 19)
    run(services.do_copy_image, image, actor=admin_user)
    op = Operation.objects.filter(kind="vps.image_upload").latest("created_at")
    assert op.state == "failed" and "ended after" in (op.error or "")
    assert op.lines.filter(message__contains="MiB sent").exists()  # it had started
    pool.refresh(0)
    assert image.volume_name not in pool.listVolumes()


@pytest.mark.django_db(transaction=True)
def test_create_killed_mid_way_is_cleaned_up(libvirtd, tmp_path, settings, admin_user):  # noqa: F811
    """The worker is killed (SIGKILL) right after the domain was defined: the reaper fails
    the Operation, the VPS shows failed with the reason, and neither the domain nor its
    volumes are left in libvirtd."""
    from tests.integration.faults import die, run_in_doomed_worker

    settings.VAR_DIR = tmp_path
    server = Server.objects.create(
        name="kvm3", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin_user
    )
    hv = Hypervisor.objects.create(
        server=server,
        uri=libvirtd["uri"],
        storage_pool=libvirtd["pool"],
        status=Hypervisor.Status.ONLINE,
        cpus=4,
        memory_mib=4096,
        storage_gib=50,
    )
    src = make_image_file(tmp_path / "tiny.qcow2", size="64M")
    with src.open("rb") as f:
        image = services.do_create_image(actor=admin_user, data={"name": "Tiny3"}, upload=f)
    plan = VpsPlan.objects.create(
        name="Nano3", vcpus=1, memory_mib=128, disk_gib=1, ip_count=0, ipv6=False
    )
    vps = services.do_create_vps(
        actor=admin_user,
        data={"hostname": "doomed", "plan": plan, "image": image, "hypervisor": hv},
    )
    op = _last_op(vps)

    def arm():
        real = lv.LibvirtSession.define

        def define_then_die(self, xml):
            real(self, xml)
            die()

        lv.LibvirtSession.define = define_then_die

    run_in_doomed_worker(op, arm)
    assert op.state == "failed"
    vps.refresh_from_db()
    assert vps.state == Vps.State.ERROR and "worker creating this VPS stopped" in vps.state_message
    conn = libvirtd["conn"]
    assert vps.domain_name not in [d.name() for d in conn.listAllDomains()]
    pool = conn.storagePoolLookupByName(libvirtd["pool"])
    pool.refresh(0)
    assert not {vps.disk_volume, vps.seed_volume} & set(pool.listVolumes())


def test_libvirtd_dying_mid_create_fails_cleanly_and_a_retry_works(
    libvirtd,  # noqa: F811
    run,
    tmp_path,
    settings,
    admin_user,
    monkeypatch,
):
    """libvirtd stops right after the domain was defined: the start fails, so does the
    cleanup (nobody answers), the Operation fails and the VPS shows the error with both
    reasons, not "creating". With libvirtd back, retrying the Operation removes what was
    left and the VPS runs."""
    from core.operations import retry_operation
    from tests.integration.libvirt import start_libvirtd, stop_libvirtd

    settings.VAR_DIR = tmp_path
    server = Server.objects.create(
        name="kvm4", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin_user
    )
    hv = Hypervisor.objects.create(
        server=server,
        uri=libvirtd["uri"],
        storage_pool=libvirtd["pool"],
        network="",  # user-mode networking: the daemon has no libvirt network
        status=Hypervisor.Status.ONLINE,
        cpus=4,
        memory_mib=4096,
        storage_gib=50,
    )
    src = make_image_file(tmp_path / "tiny.qcow2", size="64M")
    with src.open("rb") as f:
        image = services.do_create_image(actor=admin_user, data={"name": "Tiny4"}, upload=f)
    plan = VpsPlan.objects.create(
        name="Nano4", vcpus=1, memory_mib=128, disk_gib=1, ip_count=0, ipv6=False
    )
    real = lv.LibvirtSession.define

    def define_then_daemon_dies(self, xml):
        real(self, xml)
        stop_libvirtd(libvirtd)

    monkeypatch.setattr(lv.LibvirtSession, "define", define_then_daemon_dies)
    vps = run(
        services.do_create_vps,
        actor=admin_user,
        data={"hostname": "dies", "plan": plan, "image": image, "hypervisor": hv},
    )
    op = _last_op(vps)
    assert op.state == "failed"
    vps.refresh_from_db()
    assert vps.state == Vps.State.ERROR
    assert "removing what was made failed too" in vps.state_message

    monkeypatch.setattr(lv.LibvirtSession, "define", real)
    start_libvirtd(libvirtd)
    conn = libvirtd["conn"]
    assert vps.domain_name in [d.name() for d in conn.listAllDomains()]  # left behind
    retried = run(retry_operation, op, actor=admin_user)
    retried.refresh_from_db()
    assert retried.state == "succeeded", retried.error_detail or retried.error
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING
    assert conn.lookupByName(vps.domain_name).isActive()


def _local_hypervisor(libvirtd, owner, name: str) -> Hypervisor:  # noqa: F811
    server = Server.objects.create(
        name=name, address="127.0.0.1", transport=Server.Transport.LOCAL, owner=owner
    )
    return Hypervisor.objects.create(
        server=server,
        uri=libvirtd["uri"],
        storage_pool=libvirtd["pool"],
        network="",
        status=Hypervisor.Status.ONLINE,
        cpus=4,
        memory_mib=4096,
        storage_gib=50,
    )


def test_libvirtd_killed_during_a_start_fails_honestly_and_a_retry_starts_it(
    libvirtd,  # noqa: F811
    run,
    tmp_path,
    settings,
    admin_user,
):
    """SIGKILL of libvirtd while the start is inside the daemon (held at a real qemu hook):
    the Operation fails saying libvirt stopped answering, the VPS shows an error saying its
    state is unknown (not "stopped", not "running"); with the daemon back a retry runs it."""
    import threading
    import uuid as uuidlib

    from core.operations import retry_operation
    from tests.integration.libvirt import kill_libvirtd, start_gate

    settings.VAR_DIR = tmp_path
    hv = _local_hypervisor(libvirtd, admin_user, "kvm5")
    plan = VpsPlan.objects.create(
        name="Nano5", vcpus=1, memory_mib=64, disk_gib=1, ip_count=0, ipv6=False
    )
    vps = Vps.objects.create(
        uuid=uuidlib.uuid4(),
        hostname="gated",
        owner=admin_user,
        plan=plan,
        hypervisor=hv,
        state=Vps.State.STOPPED,
        vnc_password="x",
    )
    gate = tmp_path / "gate"
    gate.mkdir()
    with start_gate(libvirtd, gate):
        libvirtd["conn"].defineXML(
            f"<domain type='qemu'><name>{vps.domain_name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
            "<devices/></domain>"
        )
        (gate / f"{vps.domain_name}.hold").touch()
        killed = threading.Event()

        def kill_when_held():
            reached = gate / f"{vps.domain_name}.reached"
            for _ in range(300):
                if reached.exists():
                    kill_libvirtd(libvirtd)
                    killed.set()
                    return
                threading.Event().wait(0.05)

        killer = threading.Thread(target=kill_when_held)
        killer.start()
        run(services.do_power, vps, actor=admin_user, action="start")
        killer.join()
        assert killed.is_set(), "the start never reached the hook"
        op = _last_op(vps)
        assert op.state == "failed"
        assert "start was interrupted: libvirt on" in op.error
        assert "stopped answering" in op.error
        vps.refresh_from_db()
        assert vps.state == Vps.State.ERROR
        assert "state is unknown until libvirt answers again" in vps.state_message
    # The daemon is back (without the hook). The inventory reads the real state: the
    # start never got past the hook, so the domain is off, and the unknown is cleared.
    run(services.start_refresh, hv, actor=admin_user)
    vps.refresh_from_db()
    assert vps.state == Vps.State.STOPPED and vps.state_message == ""
    # The retry starts the domain for real.
    retried = run(retry_operation, op, actor=admin_user)
    retried.refresh_from_db()
    assert retried.state == "succeeded", retried.error_detail or retried.error
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.state_message == ""
    dom = libvirtd["conn"].lookupByName(vps.domain_name)
    assert dom.isActive()
    dom.destroy()
    dom.undefine()


def test_libvirtd_killed_during_an_image_copy_leaves_no_ready_half_volume(
    libvirtd,  # noqa: F811
    run,
    tmp_path,
    settings,
    admin_user,
    monkeypatch,
):
    """SIGKILL of libvirtd after 2 of 8 MiB were streamed: the copy fails saying how far it
    got and that the partial volume could not be removed; the volume's record is failed,
    not ready. With the daemon back the half volume is still in the pool (nobody could
    delete it); the retry removes it first and copies the whole image."""
    import hashlib
    import os

    from core.operations import retry_operation
    from tests.integration.libvirt import kill_libvirtd, start_libvirtd
    from vps.models import ImageCopy

    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(lv, "UPLOAD_CHUNK", 1 << 20)
    src = tmp_path / "big.raw"
    src.write_bytes(os.urandom(8 << 20))
    with src.open("rb") as f:  # no hypervisor yet: nothing copied
        image = run(services.do_create_image, actor=admin_user, data={"name": "Big"}, upload=f)
    hv = _local_hypervisor(libvirtd, admin_user, "kvm6")
    real = lv.LibvirtSession._upload

    def upload_then_daemon_dies(self, vol, path, length=None, progress=None):
        def report(sent, total):
            if progress is not None:
                progress(sent, total)
            if sent == 2 << 20:
                kill_libvirtd(libvirtd)

        return real(self, vol, path, length, report)

    monkeypatch.setattr(lv.LibvirtSession, "_upload", upload_then_daemon_dies)
    run(services.do_copy_image, image, actor=admin_user)
    op = Operation.objects.filter(kind="vps.image_upload").latest("created_at")
    assert op.state == "failed"
    assert "stopped after 2 of 8 MiB: libvirt stopped answering" in op.error
    assert "the partial volume could not be removed" in op.error
    record = ImageCopy.objects.get(image=image, hypervisor=hv)
    assert record.state == ImageCopy.State.FAILED and "could not be removed" in record.message

    monkeypatch.setattr(lv.LibvirtSession, "_upload", real)
    start_libvirtd(libvirtd)
    pool = libvirtd["conn"].storagePoolLookupByName(libvirtd["pool"])
    pool.refresh(0)
    assert image.volume_name in pool.listVolumes()  # the half volume, left on the disk
    retried = run(retry_operation, op, actor=admin_user)
    retried.refresh_from_db()
    assert retried.state == "succeeded", retried.error_detail or retried.error
    assert retried.lines.filter(message__contains="no finished copy made").exists()
    assert "copied to" in retried.message
    record.refresh_from_db()
    assert record.state == ImageCopy.State.READY
    pool.refresh(0)
    vol = pool.storageVolLookupByName(image.volume_name)
    with open(vol.path(), "rb") as copied:
        assert hashlib.sha256(copied.read()).hexdigest() == image.sha256
    vol.delete(0)
