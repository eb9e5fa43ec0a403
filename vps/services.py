"""State changes of the VPS area. Each validates, writes and audits in one transaction and
starts its Operation on commit; nothing here talks to libvirt (vps/tasks.py does, in the
worker). The field lists are the only place that says what a caller may write.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core import audit
from core.models import Operation
from core.operations import start_operation
from core.policy import ADMIN, APPLY, RESELLER, may, restrict, role_of
from core.services import accept_only, refuse_nul_in
from vps.models import (
    RENEW,
    Hypervisor,
    Image,
    IpAddress,
    IpPool,
    Snapshot,
    SshKey,
    Vps,
    VpsPlan,
    VpsPlanSpan,
    check_pool_range,
)
from vps.validation import inspect_image, parse_public_key

HYPERVISOR_FIELDS = [
    "server",
    "uri",
    "enabled",
    "storage_pool",
    "network",
    "cpu_ratio",
    "memory_ratio",
    "disk_ratio",
]
PLAN_FIELDS = [
    "name",
    "vcpus",
    "memory_mib",
    "disk_gib",
    "bandwidth_gib",
    "ip_count",
    "ipv6",
    "snapshot_limit",
    "price",
]
PLAN_ADMIN_FIELDS = ["owner", "allowance_for"]
PLAN_LIMITS = ["vcpus", "memory_mib", "disk_gib", "bandwidth_gib", "ip_count", "snapshot_limit"]
IMAGE_FIELDS = ["name", "os_family", "os_version", "default_user", "active"]
SSH_KEY_FIELDS = ["name", "public_key"]
POOL_FIELDS = ["name", "hypervisor", "network", "gateway", "first", "last"]
VPS_CREATE_FIELDS = ["hostname", "plan", "image", "ssh_keys", "expires_at", "location"]
VPS_ADMIN_FIELDS = ["owner", "hypervisor"]
VPS_UPDATE_FIELDS = ["hostname"]
VPS_REINSTALL_FIELDS = ["image"]
VPS_RESIZE_FIELDS = ["plan"]
VPS_RENEW_FIELDS = ["expires_at"]
SNAPSHOT_FIELDS = ["name"]
# Power actions a caller may ask for, and the task argument each becomes.
POWER_ACTIONS = ("start", "shutdown", "reboot", "force_off", "suspend", "resume")


def _save(obj, fields: list[str], data: dict, *, actor, action: str, changes_of=None):
    before = audit.snapshot(obj, fields) if obj.pk else {}
    for name, value in data.items():
        setattr(obj, name, value)
    obj.full_clean()
    with transaction.atomic():
        obj.save()
        audit.record(
            action, obj, actor=actor, changes=audit.diff(before, audit.snapshot(obj, fields))
        )
    return obj


# -- hypervisors --------------------------------------------------------------------------
def _check_hypervisor(hv: Hypervisor) -> None:
    server = hv.server
    if hv.uri == "qemu:///system" and server.transport != server.Transport.LOCAL:
        raise ValidationError(
            {"uri": "qemu:///system is the panel's own host: use it with a local server."}
        )
    if hv.uri.startswith("qemu+"):
        if server.transport != server.Transport.SSH:
            raise ValidationError({"uri": "An SSH URI needs a server reached over SSH."})
        if server.auth_method != server.Auth.KEY:
            raise ValidationError({"uri": "libvirt over SSH uses the server's key: set one."})


def do_save_hypervisor(*, actor, data: dict, hypervisor: Hypervisor | None = None) -> Hypervisor:
    accept_only(data, HYPERVISOR_FIELDS)
    refuse_nul_in(data, [f for f in HYPERVISOR_FIELDS if f != "server"])
    if hypervisor is not None and "server" in data and data["server"] != hypervisor.server:
        raise ValidationError({"server": "A hypervisor stays on its server."})
    hv = hypervisor or Hypervisor()
    before = audit.snapshot(hv, HYPERVISOR_FIELDS) if hv.pk else {}
    for name, value in data.items():
        setattr(hv, name, value)
    if not hv.server_id:
        raise ValidationError({"server": "Choose the server libvirt runs on."})
    hv.full_clean()
    _check_hypervisor(hv)
    with transaction.atomic():
        hv.save()
        audit.record(
            "hypervisor.save",
            hv,
            actor=actor,
            changes=audit.diff(before, audit.snapshot(hv, HYPERVISOR_FIELDS)),
        )
        start_refresh(hv, actor=actor)
    return hv


def do_delete_hypervisor(hypervisor: Hypervisor, *, actor) -> None:
    if hypervisor.vpses.exclude(state=Vps.State.DELETED).exists():
        raise ValidationError("Move or delete this hypervisor's VPSes first.")
    with transaction.atomic():
        audit.record("hypervisor.delete", hypervisor, actor=actor)
        hypervisor.ip_pools.all().delete()
        hypervisor.vpses.all().delete()
        hypervisor.delete()


def start_refresh(hypervisor: Hypervisor, *, actor=None) -> Operation:
    """Read the hypervisor's capacity and domains into the database (an Operation)."""
    return start_operation(
        kind="vps.refresh",
        task="vps.tasks.refresh_hypervisor",
        owner=hypervisor.server.owner,
        requested_by=actor,
        target=hypervisor,
        target_action=APPLY,
        lock_key=hypervisor.lock_key,
        args={"hypervisor": hypervisor.pk},
    )


# -- plans --------------------------------------------------------------------------------
def visible_plans(user) -> QuerySet:
    """Plans a user may choose for a new VPS: staff every plan, a reseller its own, a
    customer its reseller's (or the provider's when it has no reseller)."""
    role = role_of(user)
    if role is None:
        return VpsPlan.objects.none()
    if role == ADMIN:
        return VpsPlan.objects.all()
    if role == RESELLER:
        return VpsPlan.objects.filter(owner=user)
    reseller = getattr(user, "reseller_id", None)
    return (
        VpsPlan.objects.filter(owner_id=reseller)
        if reseller
        else VpsPlan.objects.filter(owner=None, allowance_for=None)
    )


def _check_plan(plan: VpsPlan) -> None:
    if plan.owner_id is None:
        return
    if plan.allowance_for_id is not None:
        raise ValidationError({"allowance_for": "Only the provider's plans are allowances."})
    allowance = VpsPlan.objects.filter(allowance_for_id=plan.owner_id).first()
    if allowance is None:
        raise ValidationError("You have no VPS allowance yet: ask your provider for one.")
    errors = {}
    for name in PLAN_LIMITS:
        cap, value = getattr(allowance, name), getattr(plan, name)
        if cap is not None and (value is None or value > cap):
            errors[name] = f"Your allowance gives at most {cap}."
    if plan.ipv6 and not allowance.ipv6:
        errors["ipv6"] = "Your allowance has no IPv6 address."
    if errors:
        raise ValidationError(errors)


def do_save_plan(*, actor, data: dict, plan: VpsPlan | None = None) -> VpsPlan:
    admin = role_of(actor) == ADMIN
    fields = PLAN_FIELDS + (PLAN_ADMIN_FIELDS if admin else [])
    accept_only(data, fields)
    refuse_nul_in(data, ["name"])
    plan = plan or VpsPlan(owner=None if admin else actor)
    if admin and data.get("owner") is not None and data.get("owner").role != RESELLER:
        raise ValidationError({"owner": "Plans belong to the provider or a reseller."})
    before = audit.snapshot(plan, fields) if plan.pk else {}
    for name, value in data.items():
        setattr(plan, name, value)
    plan.full_clean()
    _check_plan(plan)
    with transaction.atomic():
        try:
            with transaction.atomic():
                plan.save()
        except IntegrityError as exc:
            raise ValidationError({"name": "A plan with this name exists already."}) from exc
        audit.record(
            "vps_plan.save",
            plan,
            actor=actor,
            changes=audit.diff(before, audit.snapshot(plan, fields)),
        )
    return plan


def do_delete_plan(plan: VpsPlan, *, actor) -> None:
    if plan.vpses.exists():
        raise ValidationError("VPSes use this plan: move them to another plan first.")
    if plan.vps_spans.exists():  # billing's plan history (VpsPlanSpan) keeps the plan
        raise ValidationError("VPSes were on this plan: billing keeps it for their history.")
    with transaction.atomic():
        audit.record("vps_plan.delete", plan, actor=actor, changes={"name": [plan.name, None]})
        plan.delete()


# -- images -------------------------------------------------------------------------------
def image_dir() -> Path:
    path = Path(settings.VAR_DIR) / "vps-images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def do_create_image(*, actor, data: dict, upload) -> Image:
    """``upload``: a file object (Django's UploadedFile, or an open file). The image is kept
    only when ``qemu-img`` finds a qcow2 or raw image without a backing file."""
    accept_only(data, IMAGE_FIELDS)
    refuse_nul_in(data, IMAGE_FIELDS)
    image = Image(**data)
    image.path, image.format, image.sha256 = "-", "raw", "0" * 64
    image.full_clean(exclude=["path", "format", "sha256"])
    staging = image_dir() / f".upload-{image.uuid.hex}"
    digest = hashlib.sha256()
    size = 0
    try:
        with staging.open("wb") as out:
            chunks = (
                upload.chunks()
                if hasattr(upload, "chunks")
                else iter(lambda: upload.read(1 << 20), b"")
            )
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        try:
            info = inspect_image(staging)
        except ValidationError as exc:
            raise ValidationError({"file": exc.messages}) from exc
        final = image_dir() / f"{image.uuid.hex}.{info['format']}"
        staging.rename(final)
    finally:
        staging.unlink(missing_ok=True)
    image.path, image.format = str(final), info["format"]
    image.virtual_size, image.file_size, image.sha256 = (
        info["virtual_size"],
        size,
        digest.hexdigest(),
    )
    try:
        with transaction.atomic():
            image.save()
            audit.record("image.create", image, actor=actor, changes={"name": [None, image.name]})
            start_image_uploads(image, actor=actor)
    except Exception:
        final.unlink(missing_ok=True)
        raise
    return image


def image_lock_key(image: Image, hypervisor: Hypervisor) -> str:
    return f"vps-image:{image.pk}:{hypervisor.pk}"


def start_image_uploads(image: Image, *, actor=None) -> list[Operation]:
    """One Operation per enabled hypervisor copying the image into its pool (with progress);
    a hypervisor that has it already finishes at once."""
    ops = []
    for hv in Hypervisor.objects.filter(enabled=True).select_related("server"):
        ops.append(
            start_operation(
                kind="vps.image_upload",
                task="vps.tasks.upload_image",
                owner=hv.server.owner,
                requested_by=actor,
                target=image,
                target_action=APPLY,
                lock_key=image_lock_key(image, hv),
                args={"image": image.pk, "hypervisor": hv.pk},
            )
        )
    return ops


def do_copy_image(image: Image, *, actor) -> list[Operation]:
    """Copy the image to every enabled hypervisor now (each an Operation)."""
    with transaction.atomic():
        audit.record("image.copy", image, actor=actor)
        return start_image_uploads(image, actor=actor)


def do_update_image(image: Image, *, actor, data: dict) -> Image:
    accept_only(data, IMAGE_FIELDS)
    refuse_nul_in(data, IMAGE_FIELDS)
    return _save(image, IMAGE_FIELDS, data, actor=actor, action="image.update")


def do_delete_image(image: Image, *, actor) -> None:
    # A VPS's reinstall and the image's volumes on hypervisors still need it.
    if image.vpses.exclude(state=Vps.State.DELETED).exists():
        raise ValidationError("VPSes use this image: hide it (not offered) instead.")
    path = Path(image.path)
    with transaction.atomic():
        audit.record("image.delete", image, actor=actor, changes={"name": [image.name, None]})
        image.delete()
        transaction.on_commit(lambda: path.unlink(missing_ok=True))


# -- SSH keys -----------------------------------------------------------------------------
def do_save_ssh_key(*, actor, data: dict, key: SshKey | None = None) -> SshKey:
    accept_only(data, SSH_KEY_FIELDS)
    refuse_nul_in(data, SSH_KEY_FIELDS)
    key = key or SshKey(owner=actor)
    if "public_key" in data:
        try:
            data = {**data}
            data["public_key"], key.fingerprint = parse_public_key(data["public_key"])
        except ValidationError as exc:
            raise ValidationError({"public_key": exc.messages}) from exc
    for name, value in data.items():
        setattr(key, name, value)
    key.full_clean(exclude=["fingerprint"])
    if (
        SshKey.objects.filter(owner=key.owner, fingerprint=key.fingerprint)
        .exclude(pk=key.pk)
        .exists()
    ):
        raise ValidationError({"public_key": "You have added this key already."})
    with transaction.atomic():
        key.save()
        audit.record(
            "ssh_key.save", key, actor=actor, changes={"fingerprint": [None, key.fingerprint]}
        )
    return key


def do_delete_ssh_key(key: SshKey, *, actor) -> None:
    with transaction.atomic():
        audit.record("ssh_key.delete", key, actor=actor, changes={"name": [key.name, None]})
        key.delete()


# -- IP pools -----------------------------------------------------------------------------
def do_save_pool(*, actor, data: dict, pool: IpPool | None = None) -> IpPool:
    accept_only(data, POOL_FIELDS)
    refuse_nul_in(data, [f for f in POOL_FIELDS if f != "hypervisor"])
    pool = pool or IpPool()
    before = audit.snapshot(pool, POOL_FIELDS) if pool.pk else {}
    for name, value in data.items():
        setattr(pool, name, value)
    check_pool_range(pool)
    pool.full_clean()
    if pool.pk:
        outside = [
            a.address
            for a in pool.addresses.all()
            if not int(ipaddress.ip_address(pool.first))
            <= int(ipaddress.ip_address(a.address))
            <= int(ipaddress.ip_address(pool.last))
        ]
        if outside:
            raise ValidationError({"last": f"Addresses in use fall outside: {outside[0]}."})
    with transaction.atomic():
        pool.save()
        audit.record(
            "ip_pool.save",
            pool,
            actor=actor,
            changes=audit.diff(before, audit.snapshot(pool, POOL_FIELDS)),
        )
    return pool


def do_delete_pool(pool: IpPool, *, actor) -> None:
    if pool.addresses.exists():
        raise ValidationError("VPSes hold addresses of this pool.")
    with transaction.atomic():
        audit.record("ip_pool.delete", pool, actor=actor, changes={"name": [pool.name, None]})
        pool.delete()


def _allocate(vps: Vps, version: int, count: int) -> list[IpAddress]:
    """The lowest free addresses of the hypervisor's pools of one family; pools locked so
    two creates never take the same address."""
    if count == 0:
        return []
    pools = [
        p
        for p in IpPool.objects.select_for_update().filter(hypervisor=vps.hypervisor).order_by("pk")
        if p.version == version
    ]
    taken = set(IpAddress.objects.filter(pool__in=pools).values_list("address", flat=True))
    got: list[IpAddress] = []
    for pool in pools:
        first, last = int(ipaddress.ip_address(pool.first)), int(ipaddress.ip_address(pool.last))
        skip = {pool.gateway}
        n = first
        while n <= last and len(got) < count:
            addr = str(ipaddress.ip_address(n))
            if addr not in taken and addr not in skip:
                got.append(IpAddress(pool=pool, address=addr, vps=vps))
            n += 1
        if len(got) == count:
            break
    if len(got) < count:
        raise ValidationError(
            {"plan": f"No free IPv{version} address is left on {vps.hypervisor}: ask support."}
        )
    return IpAddress.objects.bulk_create(got)


# -- VPSes --------------------------------------------------------------------------------
def _owner_for(actor, data: dict):
    owner = data.get("owner") or actor
    role = role_of(actor)
    if owner != actor and not (
        role == ADMIN or (role == RESELLER and getattr(owner, "reseller_id", None) == actor.pk)
    ):
        raise ValidationError({"owner": "You may not create VPSes for this user."})
    return owner


def _placeable() -> list[Hypervisor]:
    return list(
        Hypervisor.objects.filter(enabled=True, status=Hypervisor.Status.ONLINE).select_related(
            "server"
        )
    )


def _fits(hv: Hypervisor, plan: VpsPlan) -> tuple[bool, float]:
    cpus, mem, disk = hv.room()
    return cpus >= plan.vcpus and mem >= plan.memory_mib and disk >= plan.disk_gib, mem


def locations_with_room(plans) -> list[str]:
    """The named locations (the hypervisor's server's ``location``) where an enabled, online
    hypervisor has room for at least one of ``plans``, sorted. Hypervisors of servers
    without a location are placed only when no location is asked for."""
    plans = list(plans)
    found = set()
    for hv in _placeable():
        where = hv.server.location
        if where and where not in found and any(_fits(hv, p)[0] for p in plans):
            found.add(where)
    return sorted(found)


def choose_hypervisor(
    plan: VpsPlan, asked: Hypervisor | None = None, location: str = ""
) -> Hypervisor:
    """The enabled hypervisor with the most memory left that fits the plan (after
    overcommit), among those of ``location`` when one is asked, or the one asked for if it
    fits."""
    candidates = [asked] if asked else _placeable()
    if location:
        candidates = [hv for hv in candidates if hv.server.location == location]
    best, best_mem = None, -1.0
    for hv in candidates:
        fits, mem = _fits(hv, plan)
        if fits and mem > best_mem:
            best, best_mem = hv, mem
    if best is None:
        size = f"({plan.vcpus} vCPUs, {plan.memory_mib} MiB, {plan.disk_gib} GiB)"
        if location and not asked:
            raise ValidationError(
                {
                    "location": f"No room for this plan {size} in {location}: choose another "
                    "location or a smaller plan."
                }
            )
        where = f"{asked}" if asked else "any hypervisor"
        raise ValidationError(
            {
                "plan": f"No room for this plan on {where} {size}: choose a smaller plan or ask "
                "support."
            }
        )
    return best


def _location(data: dict) -> str:
    """The asked location: one that a placeable hypervisor has (else a clear error)."""
    location = data.get("location") or ""
    if not location:
        return ""
    if not isinstance(location, str) or location not in {hv.server.location for hv in _placeable()}:
        raise ValidationError({"location": "Choose one of the offered locations."})
    asked = data.get("hypervisor")
    if asked is not None and asked.server.location != location:
        raise ValidationError({"location": f"{asked} is not in {location}."})
    return location


def do_create_vps(*, actor, data: dict) -> Vps:
    admin = role_of(actor) == ADMIN
    fields = VPS_CREATE_FIELDS + (VPS_ADMIN_FIELDS if admin else ["owner"])
    accept_only(data, fields)
    refuse_nul_in(data, ["hostname"])
    owner = _owner_for(actor, data)
    plan = data.get("plan")
    if plan is None or not visible_plans(actor).filter(pk=plan.pk).exists():
        raise ValidationError({"plan": "Choose one of your plans."})
    image = data.get("image")
    if image is None or not image.active:
        raise ValidationError({"image": "Choose an offered image."})
    keys = list(data.get("ssh_keys") or [])
    mine = set(restrict(SshKey, actor).filter(owner=owner).values_list("pk", flat=True))
    if any(k.pk not in mine for k in keys):
        raise ValidationError({"ssh_keys": "Choose keys of the VPS's owner."})
    location = _location(data)
    vps = Vps(
        hostname=data.get("hostname", ""),
        owner=owner,
        plan=plan,
        image=image,
        vcpus=plan.vcpus,
        memory_mib=plan.memory_mib,
        disk_gib=max(plan.disk_gib, -(-image.virtual_size // (1 << 30))),
        expires_at=data.get("expires_at"),
    )
    vps.full_clean(exclude=["hypervisor"])
    with transaction.atomic():
        # Placement and addresses under the hypervisors' row locks: two creates never both
        # take the last room or the same address.
        list(Hypervisor.objects.select_for_update().filter(enabled=True).values_list("pk"))
        vps.hypervisor = choose_hypervisor(plan, data.get("hypervisor"), location)
        vps.save()
        VpsPlanSpan.objects.create(vps=vps, plan=plan, since=vps.created_at)
        vps.ssh_keys.set(keys)
        _allocate(vps, 4, plan.ip_count)
        _allocate(vps, 6, 1 if plan.ipv6 else 0)
        add_ptrs(vps, actor=actor)
        audit.record(
            "vps.create",
            vps,
            actor=actor,
            changes={"hostname": [None, vps.hostname], "plan": [None, plan.name]},
        )
        _start(vps, "vps.create", "vps.tasks.create_vps", actor=actor)
    return vps


def _start(vps: Vps, kind: str, task: str, *, actor, **args) -> Operation:
    return start_operation(
        kind=kind,
        task=task,
        owner=vps.owner,
        requested_by=actor,
        target=vps,
        target_action=APPLY,
        lock_key=vps.lock_key,
        args={"vps": vps.pk, **args},
    )


def do_power(vps: Vps, *, actor, action: str) -> Operation:
    if action not in POWER_ACTIONS:
        raise ValidationError({"action": f"One of: {', '.join(POWER_ACTIONS)}."})
    if vps.state == Vps.State.SUSPENDED:
        raise ValidationError("The VPS has expired and is suspended: ask to have it renewed.")
    if vps.state in (Vps.State.PENDING, Vps.State.DELETING, Vps.State.DELETED):
        raise ValidationError(f"The VPS is {vps.get_state_display().lower()}.")
    with transaction.atomic():
        audit.record(f"vps.{action}", vps, actor=actor)
        return _start(vps, f"vps.{action}", "vps.tasks.power", actor=actor, action=action)


def start_suspend_expired(vps: Vps) -> Operation:
    """The expiry schedule's step (no actor): the VPS is suspended at once (power actions,
    snapshots and the console refused), and an Operation stops its domain."""
    with transaction.atomic():
        Vps.objects.filter(pk=vps.pk).update(
            state=Vps.State.SUSPENDED, state_message="Expired: suspended until renewed."
        )
        before, vps.state = vps.state, Vps.State.SUSPENDED
        audit.record("vps.expire", vps, changes={"state": [before, Vps.State.SUSPENDED]})
        return _start(vps, "vps.expire", "vps.tasks.suspend_expired", actor=None)


def do_renew_vps(vps: Vps, *, actor, data: dict) -> Vps:
    """Administrators: a new expiry (or none). A suspended VPS whose new expiry is in the
    future becomes stopped again; its owner can start it."""
    from django.utils import timezone

    accept_only(data, VPS_RENEW_FIELDS)
    if not may(actor, RENEW, vps):
        raise ValidationError("Only administrators change a VPS's expiry.")
    until = data.get("expires_at")
    if until is not None and until <= timezone.now():
        raise ValidationError({"expires_at": "Give a time in the future (or none)."})
    with transaction.atomic():
        locked = Vps.objects.select_for_update().get(pk=vps.pk)
        if locked.state in (Vps.State.DELETING, Vps.State.DELETED):
            raise ValidationError(f"The VPS is {locked.get_state_display().lower()}.")
        update = {"expires_at": until}
        if locked.state == Vps.State.SUSPENDED:
            update.update(state=Vps.State.STOPPED, state_message="")
        Vps.objects.filter(pk=vps.pk).update(**update)
        audit.record(
            "vps.renew",
            vps,
            actor=actor,
            changes={"expires_at": [audit.jsonable(locked.expires_at), audit.jsonable(until)]},
        )
    vps.refresh_from_db()
    return vps


def do_update_vps(vps: Vps, *, actor, data: dict) -> Vps:
    """Rename: the hostname (the domain's libvirt name is fixed, its title follows, and so
    do the PTR records the panel set for its addresses)."""
    accept_only(data, VPS_UPDATE_FIELDS)
    refuse_nul_in(data, VPS_UPDATE_FIELDS)
    old_hostname = vps.hostname
    before = audit.snapshot(vps, VPS_UPDATE_FIELDS)
    for name, value in data.items():
        setattr(vps, name, value)
    vps.full_clean()
    changes = audit.diff(before, audit.snapshot(vps, VPS_UPDATE_FIELDS))
    if not changes:
        return vps
    with transaction.atomic():
        vps.save(update_fields=VPS_UPDATE_FIELDS)
        audit.record("vps.rename", vps, actor=actor, changes=changes)
        rename_ptrs(vps, old_hostname, actor=actor)
        if vps.state not in (Vps.State.PENDING, Vps.State.DELETING, Vps.State.DELETED):
            _start(vps, "vps.rename", "vps.tasks.rename", actor=actor)
    return vps


def do_delete_vps(vps: Vps, *, actor) -> Operation:
    with transaction.atomic():
        Vps.objects.filter(pk=vps.pk).update(state=Vps.State.DELETING)
        vps.state = Vps.State.DELETING
        audit.record("vps.delete", vps, actor=actor, changes={"hostname": [vps.hostname, None]})
        return _start(vps, "vps.delete", "vps.tasks.delete_vps", actor=actor)


# States from which a VPS can be reinstalled or resized (its domain is defined).
_SETTLED = (Vps.State.RUNNING, Vps.State.STOPPED, Vps.State.PAUSED, Vps.State.ERROR)


def do_reinstall_vps(vps: Vps, *, actor, data: dict) -> Operation:
    """Wipe the disk: the root volume becomes a fresh clone of ``image`` (the VPS's own when
    none is given), with a new cloud-init seed. Its snapshots are deleted first (they live
    in the old disk). The disk keeps its size (never smaller than the image)."""
    accept_only(data, VPS_REINSTALL_FIELDS)
    image = data.get("image") or vps.image
    if image is None or (not image.active and image.pk != vps.image_id):
        raise ValidationError({"image": "Choose an offered image."})
    with transaction.atomic():
        locked = Vps.objects.select_for_update().get(pk=vps.pk)
        if locked.state not in _SETTLED or locked.hypervisor_id is None:
            raise ValidationError(f"The VPS is {locked.get_state_display().lower()}.")
        before = locked.image.name if locked.image_id else None
        disk_gib = max(locked.disk_gib, -(-image.virtual_size // (1 << 30)))
        Vps.objects.filter(pk=vps.pk).update(image=image, disk_gib=disk_gib)
        vps.image, vps.disk_gib = image, disk_gib
        audit.record("vps.reinstall", vps, actor=actor, changes={"image": [before, image.name]})
        return _start(vps, "vps.reinstall", "vps.tasks.reinstall_vps", actor=actor)


def do_resize_vps(vps: Vps, *, actor, data: dict) -> Operation:
    """Move the VPS to another plan (offline: it is shut down, given the plan's vCPUs and
    memory, its disk grown, and started again if it was running). A disk never shrinks; the
    plan must be one the actor may choose and fit on the VPS's hypervisor."""
    accept_only(data, VPS_RESIZE_FIELDS)
    plan = data.get("plan")
    if plan is None or not visible_plans(actor).filter(pk=plan.pk).exists():
        raise ValidationError({"plan": "Choose one of your plans."})
    with transaction.atomic():
        hv = Hypervisor.objects.select_for_update().filter(pk=vps.hypervisor_id).first()
        locked = Vps.objects.select_for_update().select_related("plan").get(pk=vps.pk)
        if locked.state not in _SETTLED or hv is None:
            raise ValidationError(f"The VPS is {locked.get_state_display().lower()}.")
        if plan.pk == locked.plan_id:
            raise ValidationError({"plan": "The VPS is on this plan already."})
        if plan.disk_gib < locked.disk_gib:
            raise ValidationError(
                {
                    "plan": f"{plan.name} has a {plan.disk_gib} GiB disk and this VPS's is "
                    f"{locked.disk_gib} GiB: a disk is never shrunk, choose a plan with at "
                    "least as much disk."
                }
            )
        if plan.disk_gib > locked.disk_gib and locked.snapshots.exists():
            # qemu cannot grow a qcow2 disk that holds internal snapshots.
            raise ValidationError(
                {"plan": "Delete this VPS's snapshots first: a disk with snapshots cannot grow."}
            )
        # The room left counts this VPS's current share: only the growth must fit.
        cpus, mem, disk = hv.room()
        grow = (
            plan.vcpus - locked.vcpus,
            plan.memory_mib - locked.memory_mib,
            plan.disk_gib - locked.disk_gib,
        )
        if grow[0] > cpus or grow[1] > mem or grow[2] > disk:
            raise ValidationError(
                {
                    "plan": f"No room for {plan.name} on {hv} ({plan.vcpus} vCPUs, "
                    f"{plan.memory_mib} MiB, {plan.disk_gib} GiB): choose a smaller plan or "
                    "ask support."
                }
            )
        changes = {
            "plan": [locked.plan.name, plan.name],
            "vcpus": [locked.vcpus, plan.vcpus],
            "memory_mib": [locked.memory_mib, plan.memory_mib],
            "disk_gib": [locked.disk_gib, plan.disk_gib],
        }
        # What the task puts back if the resize fails before the domain changed.
        previous = {
            "plan": locked.plan_id,
            "vcpus": locked.vcpus,
            "memory_mib": locked.memory_mib,
            "disk_gib": locked.disk_gib,
        }
        # Written now, so capacity counts the new size from the start (two resizes never
        # both take the last room); the Operation makes the domain match. Billing counts
        # the new plan's hours from now (the span), the old plan's until now.
        Vps.objects.filter(pk=vps.pk).update(
            plan=plan, vcpus=plan.vcpus, memory_mib=plan.memory_mib, disk_gib=plan.disk_gib
        )
        VpsPlanSpan.objects.create(vps=vps, plan=plan, since=timezone.now())
        vps.plan, vps.vcpus, vps.memory_mib, vps.disk_gib = (
            plan,
            plan.vcpus,
            plan.memory_mib,
            plan.disk_gib,
        )
        audit.record("vps.resize", vps, actor=actor, changes=changes)
        return _start(vps, "vps.resize", "vps.tasks.resize_vps", actor=actor, previous=previous)


# -- snapshots ----------------------------------------------------------------------------
def do_create_snapshot(vps: Vps, *, actor, data: dict) -> Snapshot:
    accept_only(data, SNAPSHOT_FIELDS)
    refuse_nul_in(data, SNAPSHOT_FIELDS)
    snap = Snapshot(vps=vps, name=data.get("name", ""))
    snap.full_clean(exclude=["vps"])
    with transaction.atomic():
        locked = Vps.objects.select_for_update().select_related("plan").get(pk=vps.pk)
        if locked.state not in (Vps.State.RUNNING, Vps.State.STOPPED, Vps.State.PAUSED):
            raise ValidationError(f"The VPS is {locked.get_state_display().lower()}.")
        limit = locked.plan.snapshot_limit
        if locked.snapshots.count() >= limit:
            raise ValidationError({"name": f"Your plan keeps at most {limit} snapshots."})
        if locked.snapshots.filter(name=snap.name).exists():
            raise ValidationError({"name": "A snapshot with this name exists already."})
        snap.save()
        audit.record("snapshot.create", snap, actor=actor, changes={"name": [None, snap.name]})
        _start(vps, "vps.snapshot", "vps.tasks.create_snapshot", actor=actor, snapshot=snap.pk)
    return snap


def do_revert_snapshot(snap: Snapshot, *, actor) -> Operation:
    if snap.state != Snapshot.State.READY:
        raise ValidationError("Only a ready snapshot can be reverted to.")
    with transaction.atomic():
        audit.record("snapshot.revert", snap, actor=actor)
        return _start(
            snap.vps, "vps.revert", "vps.tasks.revert_snapshot", actor=actor, snapshot=snap.pk
        )


def do_delete_snapshot(snap: Snapshot, *, actor) -> Operation:
    with transaction.atomic():
        audit.record("snapshot.delete", snap, actor=actor, changes={"name": [snap.name, None]})
        return _start(
            snap.vps,
            "vps.snapshot_delete",
            "vps.tasks.delete_snapshot",
            actor=actor,
            snapshot=snap.pk,
        )


def release_addresses(vps: Vps, *, actor=None) -> int:
    """Give the VPS's addresses back to their pools (and remove their PTR records)."""
    remove_ptrs(vps, actor=actor)
    deleted, _ = IpAddress.objects.filter(vps=vps).delete()
    return deleted


# -- reverse DNS --------------------------------------------------------------------------
def _ptr_zone(address: str, hypervisor: Hypervisor):
    """The reverse zone the panel serves for ``address`` that the hypervisor's owner (who
    holds the address ranges) may change, and the record's name in it; None otherwise."""
    if not apps.is_installed("dns"):
        return None
    import dns.reversename

    from dns.services import zone_serving

    name = dns.reversename.from_address(address).to_text(omit_final_dot=True)
    zone = zone_serving(name, user=hypervisor.server.owner)
    return zone


def add_ptrs(vps: Vps, *, actor=None) -> int:
    """A PTR ``<address> -> <hostname>.`` for each of the VPS's addresses inside a reverse
    zone the panel serves (one record per address; a name holding a PTR already is left).
    Host names without a dot make no PTR. Returns how many were added."""
    from dns import services as dns_services
    from dns.models import Record

    if "." not in vps.hostname or vps.hypervisor_id is None:
        return 0
    added = 0
    for address in vps.addresses.values_list("address", flat=True):
        zone = _ptr_zone(address, vps.hypervisor)
        if zone is None:
            continue
        data = {"name": address, "type": "PTR", "ttl": None, "content": f"{vps.hostname}."}
        try:
            clean = dns_services.clean_record(zone, data)
            if Record.objects.filter(zone=zone, name=clean["name"], type="PTR").exists():
                continue
            with transaction.atomic():
                dns_services.do_create_record(zone, actor=actor, data=data)
            added += 1
        except ValidationError:
            continue  # reverse DNS is a courtesy: it never stops the VPS
    return added


def _panel_ptrs(vps: Vps, hostname: str):
    """(zone, PTR records) per address of the VPS: the records the panel set, i.e. those in
    a served reverse zone pointing at ``hostname``."""
    from dns import services as dns_services
    from dns.models import Record

    if vps.hypervisor_id is None:
        return
    for address in vps.addresses.values_list("address", flat=True):
        zone = _ptr_zone(address, vps.hypervisor)
        if zone is None:
            continue
        try:
            name = dns_services.clean_record(
                zone, {"name": address, "type": "PTR", "ttl": None, "content": "x.invalid."}
            )["name"]
        except ValidationError:
            continue
        yield (
            zone,
            list(Record.objects.filter(zone=zone, name=name, type="PTR", content=f"{hostname}.")),
        )


def remove_ptrs(vps: Vps, *, actor=None) -> int:
    """Remove the PTR records ``add_ptrs`` made (those pointing at the VPS's host name)."""
    from dns import services as dns_services

    removed = 0
    for zone, records in _panel_ptrs(vps, vps.hostname):
        removed += dns_services.do_delete_records(zone, records, actor=actor)
    return removed


def rename_ptrs(vps: Vps, old_hostname: str, *, actor=None) -> int:
    """After a rename, the PTRs the panel set (pointing at ``old_hostname``) point at the new
    host name; a host name without a dot removes them; an address without a PTR (the old
    name had no dot) gets one. PTRs someone else set are left. Returns how many changed.
    Like every reverse DNS step, a refusal from the DNS app never stops the rename."""
    from dns import services as dns_services

    changed = 0
    if "." in old_hostname:
        for zone, records in _panel_ptrs(vps, old_hostname):
            for record in records:
                try:
                    with transaction.atomic():
                        if "." in vps.hostname:
                            dns_services.do_update_record(
                                record, actor=actor, data={"content": f"{vps.hostname}."}
                            )
                        else:
                            dns_services.do_delete_records(zone, [record], actor=actor)
                    changed += 1
                except ValidationError:
                    continue
    return changed + add_ptrs(vps, actor=actor)


def start_suspend_unpaid(vps: Vps, message: str) -> Operation:
    """Billing's dunning (no actor): held suspended like an expired VPS (power actions
    refused) with ``message``, and an Operation stops its domain."""
    with transaction.atomic():
        before = vps.state
        Vps.objects.filter(pk=vps.pk).update(state=Vps.State.SUSPENDED, state_message=message)
        vps.state, vps.state_message = Vps.State.SUSPENDED, message
        audit.record("vps.suspend", vps, changes={"state": [before, Vps.State.SUSPENDED]})
        return _start(vps, "vps.suspend", "vps.tasks.suspend_expired", actor=None)


def lift_suspend_unpaid(vps: Vps, message: str, *, start: bool) -> Operation | None:
    """Undo ``start_suspend_unpaid`` if the VPS is still held with that ``message`` (not if
    it expired or staff changed it meanwhile); ``start``: it was running, start it again."""
    with transaction.atomic():
        if not Vps.objects.filter(
            pk=vps.pk, state=Vps.State.SUSPENDED, state_message=message
        ).update(state=Vps.State.STOPPED, state_message=""):
            return None
        vps.state, vps.state_message = Vps.State.STOPPED, ""
        audit.record("vps.unsuspend", vps, changes={"state": [Vps.State.SUSPENDED, "stopped"]})
        if start:
            return _start(vps, "vps.start", "vps.tasks.power", actor=None, action="start")
    return None
