"""The VPS area in the admin, through the policy and the services."""

from django.contrib import admin

from core.admin_base import PolicyAdmin, PolicyInline
from vps import services
from vps.models import (
    Hypervisor,
    HypervisorStats,
    Image,
    ImageCopy,
    IpAddress,
    IpPool,
    Snapshot,
    SshKey,
    Vps,
    VpsPlan,
    VpsPlanSpan,
    VpsRollup,
    VpsSample,
)


def _save_hypervisor(hypervisor=None, *, actor, data):
    return services.do_save_hypervisor(actor=actor, data=data, hypervisor=hypervisor)


def _save_plan(plan=None, *, actor, data):
    return services.do_save_plan(actor=actor, data=data, plan=plan)


def _save_pool(pool=None, *, actor, data):
    return services.do_save_pool(actor=actor, data=data, pool=pool)


def _save_key(key=None, *, actor, data):
    return services.do_save_ssh_key(actor=actor, data=data, key=key)


@admin.register(Hypervisor)
class HypervisorAdmin(PolicyAdmin):
    list_display = ["__str__", "uri", "status", "enabled", "cpus", "memory_mib", "inventory_at"]
    list_filter = ["status", "enabled"]
    list_select_related = ["server"]
    fields = services.HYPERVISOR_FIELDS
    create_service = staticmethod(_save_hypervisor)
    update_service = staticmethod(_save_hypervisor)
    delete_service = staticmethod(services.do_delete_hypervisor)


@admin.register(VpsPlan)
class VpsPlanAdmin(PolicyAdmin):
    list_display = ["name", "owner", "vcpus", "memory_mib", "disk_gib", "ip_count", "price"]
    list_select_related = ["owner"]
    fields = [*services.PLAN_FIELDS, *services.PLAN_ADMIN_FIELDS]
    create_service = staticmethod(_save_plan)
    update_service = staticmethod(_save_plan)
    delete_service = staticmethod(services.do_delete_plan)


@admin.register(Image)
class ImageAdmin(PolicyAdmin):
    """Images are uploaded in the portal or the API (checked with qemu-img); here their
    names and whether they are offered change."""

    list_display = ["name", "format", "virtual_size", "active", "created_at"]
    fields = services.IMAGE_FIELDS
    update_service = staticmethod(services.do_update_image)
    delete_service = staticmethod(services.do_delete_image)


@admin.register(SshKey)
class SshKeyAdmin(PolicyAdmin):
    list_display = ["name", "owner", "fingerprint", "created_at"]
    list_select_related = ["owner"]
    fields = services.SSH_KEY_FIELDS
    update_service = staticmethod(_save_key)
    delete_service = staticmethod(services.do_delete_ssh_key)


class AddressInline(PolicyInline):
    model = IpAddress
    fields = ["address", "vps", "allocated_at"]


@admin.register(IpPool)
class IpPoolAdmin(PolicyAdmin):
    list_display = ["name", "hypervisor", "network", "first", "last"]
    list_select_related = ["hypervisor__server"]
    fields = services.POOL_FIELDS
    inlines = [AddressInline]
    create_service = staticmethod(_save_pool)
    update_service = staticmethod(_save_pool)
    delete_service = staticmethod(services.do_delete_pool)


@admin.register(Vps)
class VpsAdmin(PolicyAdmin):
    list_display = ["hostname", "owner", "plan", "hypervisor", "state", "created_at"]
    list_filter = ["state"]
    search_fields = ["hostname", "owner__email"]
    list_select_related = ["owner", "plan", "hypervisor__server"]
    fields = ["hostname", "owner", "plan", "image", "hypervisor", "state", "drift", "expires_at"]
    readonly_fields = ["owner", "plan", "image", "hypervisor", "state", "drift", "expires_at"]
    update_service = staticmethod(services.do_update_vps)
    delete_service = staticmethod(services.do_delete_vps)


@admin.register(Snapshot)
class SnapshotAdmin(PolicyAdmin):
    list_display = ["name", "vps", "state", "created_at"]
    list_select_related = ["vps"]


@admin.register(IpAddress)
class IpAddressAdmin(PolicyAdmin):
    """Read-only: addresses are allocated and released with their VPS."""

    list_display = ["address", "pool", "vps", "allocated_at"]
    list_select_related = ["pool", "vps"]
    search_fields = ["address"]


@admin.register(HypervisorStats)
class HypervisorStatsAdmin(PolicyAdmin):
    """Read-only: written by each statistics round (vps/stats.py)."""

    list_display = ["hypervisor", "last_round_at", "failures", "last_error"]
    list_select_related = ["hypervisor__server"]


@admin.register(ImageCopy)
class ImageCopyAdmin(PolicyAdmin):
    """Read-only: written by the image copy Operations (vps/tasks.py)."""

    list_display = ["image", "hypervisor", "state", "updated_at"]
    list_filter = ["state"]
    list_select_related = ["image", "hypervisor__server"]


@admin.register(VpsSample)
class VpsSampleAdmin(PolicyAdmin):
    """Read-only: raw samples are written by the statistics rounds, pruned after 48 hours."""

    list_display = ["vps", "at"]
    list_select_related = ["vps"]
    show_full_result_count = False


@admin.register(VpsRollup)
class VpsRollupAdmin(PolicyAdmin):
    """Read-only: 5-minute rollups are written and pruned by the statistics schedules."""

    list_display = ["vps", "start", "count"]
    list_select_related = ["vps"]
    show_full_result_count = False


@admin.register(VpsPlanSpan)
class VpsPlanSpanAdmin(PolicyAdmin):
    """Read-only: the plan history billing charges VPS hours by (written with each plan
    change in vps/services.py and vps/tasks.py)."""

    list_display = ["vps", "plan", "since"]
    list_select_related = ["vps", "plan"]
    show_full_result_count = False
