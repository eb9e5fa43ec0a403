"""Operation tasks of the VPS area: the only code that acts on hypervisors (through
vps/libvirt_adapter.py), run by the worker. Each writes back what it found, so pages never
ask libvirt anything."""

from __future__ import annotations

import copy
import secrets
import shutil
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import audit, events
from core.events import topic_of
from core.operations import LockHolder, OperationError, on_worker_lost
from vps import libvirt_adapter as lv
from vps.models import Hypervisor, Image, ImageCopy, Snapshot, Vps, VpsPlan, VpsPlanSpan
from vps.services import image_lock_key, release_addresses

STATE_OF = {
    "running": Vps.State.RUNNING,
    "stopped": Vps.State.STOPPED,
    "paused": Vps.State.PAUSED,
    "missing": Vps.State.MISSING,
}


# In the message of a VPS whose power action was cut off with libvirt (see _power_failed);
# the inventory clears that message once it reads the real state.
STATE_UNKNOWN = "state is unknown until libvirt answers again"


def _shutdown_timeout() -> float:
    return float(getattr(settings, "PANEL_VPS_SHUTDOWN_TIMEOUT", 60))


def _vps(pk: int) -> Vps:
    return Vps.objects.select_related("hypervisor__server", "plan", "image", "owner").get(pk=pk)


def _set_state(vps: Vps, state: str, message: str = "") -> None:
    vps.state, vps.state_message = state, message
    Vps.objects.filter(pk=vps.pk).update(state=state, state_message=message)


# -- inventory ----------------------------------------------------------------------------
def refresh_hypervisor(ctx, hypervisor: int) -> str:
    hv = Hypervisor.objects.select_related("server").get(pk=hypervisor)
    try:
        with lv.connect(hv) as session:
            cap = session.capacity()
            domains = session.domains()
    except lv.HypervisorError as exc:
        Hypervisor.objects.filter(pk=hv.pk).update(
            status=Hypervisor.Status.OFFLINE, last_error=str(exc)
        )
        raise
    return store_inventory(hv, cap, domains)


def store_inventory(hv: Hypervisor, cap: dict, domains: list) -> str:
    """Write one hypervisor's capacity and its domains' states: the hypervisor's VPSes are
    read once, and only those whose state or drift changed are written, one UPDATE per
    distinct (state, drift) (usually a handful, however many domains there are)."""
    pool = next((p for p in cap["pools"] if p["name"] == hv.storage_pool), None)
    now = timezone.now()
    by_name = {d.name: d for d in domains}
    settled = Vps.objects.filter(hypervisor=hv).exclude(
        state__in=[Vps.State.PENDING, Vps.State.DELETING, Vps.State.DELETED]
    )
    known = set()
    groups: dict[tuple[str, str], list[int]] = {}
    announce: list[tuple[str, object, dict]] = []
    rows = settled.values_list(
        "pk", "uuid", "state", "drift", "vcpus", "memory_mib", "owner_id", "owner__reseller_id"
    )
    for pk, uuid, state_now, drift_now, vcpus, memory_mib, owner_id, reseller_id in rows:
        name = f"vps-{uuid.hex}"
        known.add(name)
        dom = by_name.get(name)
        state = STATE_OF.get(dom.state, Vps.State.ERROR) if dom else Vps.State.MISSING
        if state_now == Vps.State.SUSPENDED and dom is not None:
            state = Vps.State.SUSPENDED  # expired: only a renewal ends it
        drift = _drift(dom, vcpus, memory_mib)
        if (state, drift) != (state_now, drift_now):
            groups.setdefault((state, drift), []).append(pk)
            owner = _Owner(owner_id, reseller_id)
            announce.append((uuid.hex, owner, {"state": state, "source": "inventory"}))
    with transaction.atomic():
        for (state, drift), pks in groups.items():
            Vps.objects.filter(pk__in=pks).update(state=state, drift=drift)
            if state != Vps.State.ERROR:
                # The state an interrupted action could not know is known now.
                Vps.objects.filter(pk__in=pks, state_message__contains=STATE_UNKNOWN).update(
                    state_message=""
                )
        # Open pages and integrators hear of what the inventory found, as of what an event
        # said: a change seen first by the inventory (a missed event, a daemon restart) would
        # otherwise never be announced, the event that follows finding nothing to change.
        events.changed_many(topic_of(Vps), announce)
        settled.update(inventory_at=now)
        Hypervisor.objects.filter(pk=hv.pk).update(
            status=Hypervisor.Status.ONLINE,
            cpus=cap["cpus"],
            memory_mib=cap["memory_mib"],
            storage_gib=(pool["capacity"] >> 30) if pool else 0,
            storage_free_gib=(pool["available"] >> 30) if pool else 0,
            pools=cap["pools"],
            networks=cap["networks"],
            foreign_domains=sorted(n for n in by_name if n not in known)[:1000],
            inventory_at=now,
            last_error="",
        )
    changed = sum(len(p) for p in groups.values())
    return f"{len(domains)} domains, {changed} VPSes changed"


class _Owner(NamedTuple):
    """What events.changed_many reads of an owner (its key and its reseller's)."""

    pk: int | None
    reseller_id: int | None


def _drift(dom, vcpus: int, memory_mib: int) -> str:
    if dom is None:
        return "The domain is not on the hypervisor."
    diffs = []
    if dom.vcpus and dom.vcpus != vcpus:
        diffs.append(f"vCPUs {dom.vcpus} (the panel set {vcpus})")
    if dom.memory_kib and dom.memory_kib // 1024 != memory_mib:
        diffs.append(f"memory {dom.memory_kib // 1024} MiB (the panel set {memory_mib})")
    return "; ".join(diffs)


def refresh_all() -> int:
    """Scheduled: one refresh Operation per enabled hypervisor."""
    from vps.services import start_refresh

    count = 0
    for hv in Hypervisor.objects.filter(enabled=True).select_related("server"):
        start_refresh(hv)
        count += 1
    return count


# -- images -------------------------------------------------------------------------------
def upload_image(ctx, image: int, hypervisor: int) -> str:
    """Copy an image into one hypervisor's pool through a libvirt stream, reporting the
    bytes sent as the Operation's progress (a line at every tenth)."""
    img = Image.objects.get(pk=image)
    hv = Hypervisor.objects.select_related("server").get(pk=hypervisor)
    told = [-1]

    def report(sent: int, total: int) -> None:
        percent = 5 + int(90 * sent / max(total, 1))
        tenth = percent // 10
        message = None
        if tenth != told[0]:
            told[0] = tenth
            message = f"{sent >> 20} of {total >> 20} MiB sent"
        ctx.progress(percent, message)

    ctx.progress(2, f"Copying {img} ({img.file_size >> 20} MiB) into {hv.storage_pool} on {hv}")
    sent = [0]

    def track(done: int, total: int) -> None:
        sent[0] = done
        report(done, total)

    with lv.connect(hv) as session:
        try:
            outcome = copy_image(ctx, session, img, hv, progress=track)
        except lv.HypervisorError as exc:
            if not sent[0]:
                raise
            why = "" if session.alive() else "libvirt stopped answering: "
            raise lv.HypervisorError(
                f"Copying {img} to {hv} stopped after {sent[0] >> 20} of "
                f"{img.file_size >> 20} MiB: {why}{exc}",
                retryable=exc.retryable,
            ) from exc
    ctx.progress(100)
    return {
        "present": f"{img} was already on {hv}",
        "copied": f"{img} copied to {hv}",
        "created": f"{img}'s volume created on {hv} (this driver holds no data)",
    }[outcome]


def copy_image(ctx, session, img: Image, hv: Hypervisor, progress=None) -> str:
    """The image into the hypervisor's pool, its ``ImageCopy`` row saying how far it got.
    A volume found without a finished copy on record is what a copy cut short left (libvirtd
    or the worker died before it could be deleted): it is removed and copied again. Callers
    hold the image's lock for this hypervisor."""
    record, _ = ImageCopy.objects.get_or_create(image=img, hypervisor=hv)
    ready = record.state == ImageCopy.State.READY
    rows = ImageCopy.objects.filter(pk=record.pk)
    if not ready:
        rows.update(state=ImageCopy.State.COPYING, message="", updated_at=timezone.now())
        if session.delete_volume(img.volume_name):
            ctx.log(
                f"Removed a volume of {img} that no finished copy made (a copy cut short): "
                "copying it again."
            )
    try:
        outcome = session.copy_image(img, progress=progress)
    except Exception as exc:
        rows.update(state=ImageCopy.State.FAILED, message=str(exc)[:500], updated_at=timezone.now())
        raise
    if not ready:
        rows.update(state=ImageCopy.State.READY, message="", updated_at=timezone.now())
    return outcome


def _ensure_image(ctx, session, record: Vps) -> None:
    with _image_lock(ctx, record):
        copy_image(ctx, session, record.image, record.hypervisor)
        session.ensure_image(record.image)


def _image_lock(ctx, record: Vps) -> LockHolder:
    """The lock an image copy to this hypervisor holds: a create copying the image itself
    (or waiting for a copy under way) never takes a half-copied volume for the image."""
    keyed = copy.copy(ctx.op)
    keyed.lock_key = image_lock_key(record.image, record.hypervisor)
    return LockHolder(keyed, ctx)


# -- create -------------------------------------------------------------------------------
def network_config(vps: Vps) -> str:
    """cloud-init network config v2 (JSON, which is YAML) with the VPS's addresses."""
    import ipaddress
    import json

    addresses, routes = [], []
    for addr in vps.addresses.select_related("pool"):
        net = ipaddress.ip_network(addr.pool.network)
        addresses.append(f"{addr.address}/{net.prefixlen}")
        routes.append({"to": "default" if net.version == 4 else "::/0", "via": addr.pool.gateway})
    eth = {"match": {"name": "e*"}, "addresses": addresses, "routes": routes}
    if not addresses:
        eth = {"match": {"name": "e*"}, "dhcp4": True}
    return json.dumps({"version": 2, "ethernets": {"eth0": eth}}) + "\n"


def create_vps(ctx, vps: int) -> str:
    record = _vps(vps)
    hv = record.hypervisor
    # A create that failed never ran the VPS (only a successful one gives it its VNC
    # password): retrying the Operation starts it over, once what it left is removed.
    again = record.state in (Vps.State.ERROR, Vps.State.MISSING) and not record.vnc_password
    if again:
        _set_state(record, Vps.State.PENDING)
    elif record.state != Vps.State.PENDING:
        raise OperationError(f"The VPS is {record.get_state_display().lower()}, not being created.")
    scratch = lv.scratch_dir()
    try:
        with lv.connect(hv) as session:
            try:
                if again:
                    ctx.log("Removing what the failed create left on the hypervisor")
                    _remove_made(session, record)
                return _create(ctx, session, record, scratch)
            except Exception as exc:
                ctx.log(f"Create failed, removing what was made: {exc}")
                message = str(exc)
                try:
                    _remove_made(session, record)
                except Exception as cleanup:  # noqa: BLE001 - e.g. libvirtd died mid-way
                    message = (
                        f"{exc} (removing what was made failed too: {cleanup}; the "
                        "hypervisor's inventory lists what is left)"
                    )
                _set_state(record, Vps.State.ERROR, message[:500])
                raise
    except lv.HypervisorError as exc:
        # libvirt not reachable at all (the daemon down): never leave the VPS "creating".
        if _vps(vps).state == Vps.State.PENDING:
            _set_state(record, Vps.State.ERROR, str(exc)[:500])
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _remove_made(session, record: Vps) -> None:
    """What a create makes on the hypervisor: the domain and both volumes."""
    session.undefine(record.domain_name)
    for name in (record.disk_volume, record.seed_volume):
        session.delete_volume(name)


def _create_worker_lost(op, vps: int | None = None) -> None:
    """The worker creating the VPS died mid-way (the reaper calls this): remove what it had
    made on the hypervisor and show the VPS failed with the reason."""
    record = _vps(vps)
    if record.state != Vps.State.PENDING:
        return
    try:
        with lv.connect(record.hypervisor) as session:
            _remove_made(session, record)
        message = "The worker creating this VPS stopped; what it had made was removed."
    except Exception as exc:  # noqa: BLE001 - the VPS is failed whatever the cleanup does
        message = (
            f"The worker creating this VPS stopped, and removing what it made failed ({exc}): "
            "the hypervisor's inventory lists what is left."
        )
    _set_state(record, Vps.State.ERROR, message[:500])


on_worker_lost(create_vps, _create_worker_lost)


def _create(ctx, session, record: Vps, scratch: Path) -> str:
    hv = record.hypervisor
    ctx.progress(10, f"Image {record.image} on {hv}")
    _ensure_image(ctx, session, record)
    ctx.progress(30, f"Disk of {record.disk_gib} GiB")
    disk = session.clone_disk(record.image, record.disk_volume, record.disk_gib)
    ctx.progress(50, "cloud-init seed")
    seed_path = _put_seed(session, record, scratch)
    password = secrets.token_urlsafe(6)[:8]  # VNC passwords are 8 characters at most
    spec = lv.DomainSpec(
        name=record.domain_name,
        title=record.hostname,
        vcpus=record.vcpus,
        memory_mib=record.memory_mib,
        disk_path=disk,
        disk_format="qcow2",
        seed_path=seed_path,
        network=hv.network,
        vnc_password=password,
        mac=lv.new_mac(),
        test_driver=hv.is_test_driver,
    )
    ctx.progress(70, "Defining the domain")
    session.define(lv.domain_xml(spec))
    ctx.progress(80, "Starting")
    session.call(record.domain_name, "create")
    if not session.wait_state(record.domain_name, "running", 30):
        raise lv.HypervisorError("The domain did not start running.")
    Vps.objects.filter(pk=record.pk).update(
        state=Vps.State.RUNNING,
        state_message="",
        vnc_port=session.vnc_port(record.domain_name),
        vnc_password=password,
        inventory_at=timezone.now(),
    )
    addresses = ", ".join(record.addresses.values_list("address", flat=True)) or "none"
    return f"{record.hostname} is running on {hv} (addresses: {addresses})"


def _put_seed(session, record: Vps, scratch: Path) -> str:
    """Build the NoCloud seed ISO (hostname, the image's user with the VPS's keys, its
    addresses) and put it into the pool as the VPS's seed volume."""
    seed = scratch / "seed.iso"
    lv.build_seed_iso(
        seed,
        hostname=record.hostname,
        user=record.image.default_user,
        keys=[k.public_key for k in record.ssh_keys.all()],
        network=network_config(record),
    )
    return session.put_file(record.seed_volume, seed)


# -- reinstall and resize -----------------------------------------------------------------
def _defined_or_missing(session, record: Vps) -> None:
    if session.lookup(record.domain_name) is None:
        _set_state(record, Vps.State.MISSING)
        raise OperationError("The domain is not on the hypervisor (see drift).")


def reinstall_vps(ctx, vps: int) -> str:
    """Stop, delete the snapshots, replace the disk with a fresh clone of the image (grown
    to the VPS's disk), write a new seed and start. A failure leaves the VPS in error with
    the reason (it can be reinstalled again)."""
    record = _vps(vps)
    name = record.domain_name
    scratch = lv.scratch_dir()
    try:
        with lv.connect(record.hypervisor) as session:
            _defined_or_missing(session, record)
            try:
                ctx.progress(10, "Deleting the snapshots of the old disk")
                gone = session.delete_snapshots(name)
                record.snapshots.all().delete()
                ctx.log(f"{gone} snapshots deleted.")
                if session.state(name) != "stopped":
                    ctx.progress(20, "Stopping")
                    session.call(name, "destroy")
                ctx.progress(30, f"Image {record.image} on {record.hypervisor}")
                _ensure_image(ctx, session, record)
                ctx.progress(50, f"A fresh disk of {record.disk_gib} GiB")
                session.clone_disk(record.image, record.disk_volume, record.disk_gib)
                ctx.progress(70, "cloud-init seed")
                _put_seed(session, record, scratch)
                ctx.progress(85, "Starting")
                session.call(name, "create")
                if not session.wait_state(name, "running", 30):
                    raise lv.HypervisorError("The domain did not start running.")
            except Exception as exc:
                _set_state(record, Vps.State.ERROR, f"Reinstall failed: {exc}"[:500])
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    Vps.objects.filter(pk=record.pk).update(
        state=Vps.State.RUNNING, state_message="", drift="", inventory_at=timezone.now()
    )
    return f"{record.hostname} reinstalled from {record.image} and running"


def resize_vps(ctx, vps: int, previous: dict | None = None) -> str:
    """Offline: shut down (ACPI, forced after the timeout), set the plan's vCPUs and memory
    in the domain's definition, grow the disk, and start again if it was running.

    do_resize_vps wrote the new plan before this ran; ``previous`` is what the VPS had. A
    failure before the disk grew leaves the domain as it was (its old vCPUs and memory put
    back, started again if it was running) and puts the VPS back on its previous plan (the
    resize's plan span removed), so it is billed at the plan it kept. Once the disk has
    grown (a disk never shrinks) the VPS keeps the new plan, whatever failed after (starting
    it). Should libvirt drop a definition it did take, the inventory reports the drift."""
    record = _vps(vps)
    untouched: list[bool] = []  # _resize appends True while the domain is as it was
    try:
        final = _resize(ctx, record, previous, untouched)
    except Exception as exc:
        message = f"Resize failed: {exc}"
        if untouched and previous is not None:
            kept = _put_back_plan(record, previous)
            if kept is not None:
                message += f" The VPS stays on the plan {kept}."
        Vps.objects.filter(pk=record.pk).update(state_message=message[:500])
        raise
    Vps.objects.filter(pk=record.pk).update(
        state=STATE_OF.get(final, Vps.State.ERROR), state_message="", drift=""
    )
    return f"{record.hostname} now has {record.vcpus} vCPUs, {record.memory_mib} MiB, " + (
        f"{record.disk_gib} GiB"
    )


def _resize(ctx, record: Vps, previous: dict | None, untouched: list[bool]) -> str:
    name = record.domain_name
    untouched.append(True)
    with lv.connect(record.hypervisor) as session:
        _defined_or_missing(session, record)
        state = session.state(name)
        was_on = state in ("running", "paused")
        if state == "paused":
            session.call(name, "resume")
        if state != "stopped":
            _shutdown(ctx, session, name)
        try:
            ctx.progress(40, f"{record.vcpus} vCPUs, {record.memory_mib} MiB")
            session.set_resources(name, vcpus=record.vcpus, memory_mib=record.memory_mib)
            untouched.clear()  # one defineXML: it either happened or it did not
            ctx.progress(60, f"Disk to {record.disk_gib} GiB")
            if not session.grow_volume(record.disk_volume, record.disk_gib):
                ctx.log("This driver cannot grow volumes (libvirt's test driver): disk unchanged.")
        except Exception:
            if not untouched and previous is not None:
                _undefine_resize(ctx, session, name, previous, untouched)
            if untouched and was_on:
                _start_again(ctx, session, name)
            raise
        if was_on:
            ctx.progress(80, "Starting")
            session.call(name, "create")
            if not session.wait_state(name, "running", 30):
                raise lv.HypervisorError("The domain did not start running.")
        return session.state(name)


def _undefine_resize(ctx, session, name: str, previous: dict, untouched: list[bool]) -> None:
    """The disk did not grow: give the domain its old vCPUs and memory back."""
    try:
        session.set_resources(name, vcpus=previous["vcpus"], memory_mib=previous["memory_mib"])
    except Exception as exc:  # noqa: BLE001 - the resize's own error is the one raised
        ctx.log(f"The old vCPUs and memory could not be put back ({exc}): the new plan stays.")
        return
    untouched.append(True)


def _start_again(ctx, session, name: str) -> None:
    try:
        session.call(name, "create")
    except Exception as exc:  # noqa: BLE001 - the resize's own error is the one raised
        ctx.log(f"The VPS could not be started again ({exc}).")


def _put_back_plan(record: Vps, previous: dict) -> str | None:
    """Put the VPS back on ``previous`` (its plan, vCPUs, memory and disk) with a
    ``vps.resize_revert`` audit entry, in one transaction; the plan's name, or None when the
    VPS has changed plan again since (nothing is put back then). The resize's plan span is
    removed: the VPS never had the new plan, so billing counts the old one throughout (the
    audit log keeps the attempt)."""
    with transaction.atomic():
        locked = Vps.objects.select_for_update().select_related("plan").get(pk=record.pk)
        old = VpsPlan.objects.filter(pk=previous["plan"]).first()
        if old is None or locked.plan_id != record.plan_id:
            return None
        fields = ("vcpus", "memory_mib", "disk_gib")
        Vps.objects.filter(pk=locked.pk).update(plan=old, **{f: previous[f] for f in fields})
        latest = VpsPlanSpan.objects.filter(vps=locked).order_by("since", "id").last()
        if latest is not None and latest.plan_id == record.plan_id:
            latest.delete()
        else:  # no span of the resize (queued before spans existed): the old plan from now
            VpsPlanSpan.objects.create(vps=locked, plan=old, since=timezone.now())
        changes = {"plan": [locked.plan.name, old.name]}
        changes |= {f: [getattr(locked, f), previous[f]] for f in fields}
        audit.record("vps.resize_revert", locked, actor=None, changes=changes)
    return old.name


# -- power --------------------------------------------------------------------------------
def power(ctx, vps: int, action: str) -> str:
    record = _vps(vps)
    name = record.domain_name
    with lv.connect(record.hypervisor) as session:
        state = session.state(name)
        if state == "missing":
            _set_state(record, Vps.State.MISSING)
            raise OperationError("The domain is not on the hypervisor (see drift).")
        if action == "reboot" and state != "running":
            raise OperationError("Only a running VPS can be rebooted.")
        try:
            _power(ctx, session, name, action, state)
            final = session.state(name)
        except lv.HypervisorError as exc:
            failure = _power_failed(session, record, action, exc)
            if failure is exc:
                raise
            raise failure from exc
    _set_state(record, STATE_OF.get(final, Vps.State.ERROR))
    return f"{record.hostname} is {record.get_state_display().lower()}"


def _power(ctx, session, name: str, action: str, state: str) -> None:
    if action == "start":
        if state == "stopped":
            session.call(name, "create")
    elif action == "resume":
        if state == "paused":
            session.call(name, "resume")
    elif action == "suspend":
        if state == "running":
            session.call(name, "suspend")
    elif action == "force_off":
        if state != "stopped":
            session.call(name, "destroy")
    elif action == "reboot":
        _reboot(ctx, session, name)
    elif action == "shutdown":
        if state == "paused":
            session.call(name, "resume")
        if state != "stopped":
            _shutdown(ctx, session, name)


def _power_failed(session, record: Vps, action: str, exc: lv.HypervisorError):
    """The VPS as libvirt now has it, with why the action failed. When libvirt stopped
    answering mid-way (its daemon died), nobody knows whether the action happened: the VPS
    shows an error saying so (not its old state) until a retry or the inventory reads it."""
    verb = action.replace("_", " ")
    if session.alive():
        try:
            now = session.state(record.domain_name)
        except lv.HypervisorError:
            now = None
        if now is not None:
            _set_state(record, STATE_OF.get(now, Vps.State.ERROR), f"{verb} failed: {exc}"[:500])
            return exc
    message = (
        f"The {verb} was interrupted: libvirt on {record.hypervisor} stopped answering ({exc}). "
        f"The VPS's {STATE_UNKNOWN}: retry, or refresh the inventory."
    )
    _set_state(record, Vps.State.ERROR, message[:500])
    return lv.HypervisorError(message, retryable=True)


def suspend_expired(ctx, vps: int) -> str:
    """Stop an expired VPS's domain (forced: it has expired, the grace period keeps the
    disk). The VPS stays suspended whatever the domain's state was."""
    record = _vps(vps)
    if record.state != Vps.State.SUSPENDED:
        return f"{record.hostname} was renewed meanwhile: left as it is"
    with lv.connect(record.hypervisor) as session:
        if session.state(record.domain_name) not in ("stopped", "missing"):
            session.call(record.domain_name, "destroy")
    return f"{record.hostname} expired: stopped and suspended"


def _shutdown(ctx, session, name: str) -> None:
    """ACPI first; forced off when the guest has not stopped within the timeout."""
    timeout = _shutdown_timeout()
    ctx.progress(20, f"ACPI shutdown (forced after {timeout:g} s)")
    session.call(name, "shutdown")
    if not session.wait_state(name, "stopped", timeout):
        ctx.log("The guest did not stop in time: forced off.")
        session.call(name, "destroy")


def _reboot(ctx, session, name: str) -> None:
    try:
        session.call(name, "reboot", 0)
    except lv.HypervisorError as exc:
        # Drivers without an ACPI reboot (libvirt's test driver among them): a cold restart.
        ctx.log(f"Reboot request refused ({exc}); restarting instead.")
        _shutdown(ctx, session, name)
        session.call(name, "create")


def rename(ctx, vps: int) -> str:
    record = _vps(vps)
    with lv.connect(record.hypervisor) as session:
        import libvirt

        session.call(
            record.domain_name,
            "setMetadata",
            libvirt.VIR_DOMAIN_METADATA_TITLE,
            record.hostname,
            None,
            None,
            libvirt.VIR_DOMAIN_AFFECT_CONFIG,
        )
    return f"Title set to {record.hostname}"


def delete_vps(ctx, vps: int) -> str:
    record = _vps(vps)
    if record.hypervisor is not None:
        with lv.connect(record.hypervisor) as session:
            ctx.progress(20, "Removing the domain")
            session.undefine(record.domain_name)
            ctx.progress(60, "Removing its volumes")
            for name in (record.disk_volume, record.seed_volume):
                session.delete_volume(name)
    with transaction.atomic():
        released = release_addresses(record)
        record.snapshots.all().delete()
        Vps.objects.filter(pk=record.pk).update(state=Vps.State.DELETED, vnc_password="")
    return f"{record.hostname} deleted ({released} addresses released)"


# -- snapshots ----------------------------------------------------------------------------
def create_snapshot(ctx, vps: int, snapshot: int) -> str:
    record = _vps(vps)
    snap = Snapshot.objects.get(pk=snapshot)
    try:
        with lv.connect(record.hypervisor) as session:
            session.call(
                record.domain_name,
                "snapshotCreateXML",
                f"<domainsnapshot><name>{snap.name}</name></domainsnapshot>",
                0,
            )
    except Exception:
        Snapshot.objects.filter(pk=snap.pk).update(state=Snapshot.State.ERROR)
        raise
    Snapshot.objects.filter(pk=snap.pk).update(state=Snapshot.State.READY)
    return f"Snapshot {snap.name} taken"


def revert_snapshot(ctx, vps: int, snapshot: int) -> str:
    record = _vps(vps)
    snap = Snapshot.objects.get(pk=snapshot, vps=record)
    with lv.connect(record.hypervisor) as session:
        dom = session.lookup(record.domain_name)
        if dom is None:
            raise OperationError("The domain is not on the hypervisor.")
        sn = session.call(record.domain_name, "snapshotLookupByName", snap.name, 0)
        session.call(record.domain_name, "revertToSnapshot", sn, 0)
        final = session.state(record.domain_name)
    _set_state(record, STATE_OF.get(final, Vps.State.ERROR))
    return f"Reverted to {snap.name}"


def delete_snapshot(ctx, vps: int, snapshot: int) -> str:
    record = _vps(vps)
    snap = Snapshot.objects.get(pk=snapshot, vps=record)
    with lv.connect(record.hypervisor) as session:
        if session.lookup(record.domain_name) is not None:
            try:
                sn = session.call(record.domain_name, "snapshotLookupByName", snap.name, 0)
            except lv.HypervisorError:
                sn = None  # already gone on the hypervisor
            if sn is not None:
                try:
                    sn.delete(0)
                except Exception as exc:
                    raise lv.HypervisorError(str(exc)) from exc
    snap.delete()
    return f"Snapshot {snap.name} deleted"
