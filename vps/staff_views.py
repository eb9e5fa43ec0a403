"""The staff side of the VPS area: hypervisors with their capacity, OS images, VPS plans
and IP pools. Everything is read from the database (the inventory), changed through
vps/services.py and reached through the policy: customers get 404 on every page here,
resellers see the plans pages only (their own plans, within their allowance)."""

from __future__ import annotations

import ipaddress

from django.db.models import Count, Q, QuerySet, Sum
from django.http import Http404
from django.urls import reverse

from core.generic import (
    PortalActionView,
    PortalDeleteView,
    PortalDetailView,
    PortalEditView,
    PortalListView,
)
from core.policy import (
    ADD,
    APPLY,
    CHANGE,
    DELETE,
    VIEW,
    annotate_permissions,
    is_staff,
    may,
    restrict,
)
from core.tables import Column, Table
from vps import services
from vps.filters import HypervisorFilter, IpPoolFilter
from vps.models import Hypervisor, Image, IpAddress, IpPool, Vps, VpsPlan
from vps.staff_forms import HypervisorForm, ImageForm, ImageUploadForm, PlanForm, PoolForm

LIVE_STATES = [s for s in Vps.State.values if s != Vps.State.DELETED]


def staff_area(user, model) -> bool:
    """Whether the staff pages of ``model`` are for this user: staff read them, whoever may
    create such rows (administrators; resellers for plans) manages them."""
    return is_staff(user) or may(user, ADD, model)


class StaffOnly:
    """404 for anyone the page is not for, before any row is read."""

    model = None

    def dispatch(self, request, *args, **kwargs):
        if not staff_area(request.user, self.model):
            raise Http404
        return super().dispatch(request, *args, **kwargs)


class StaffList(StaffOnly, PortalListView):
    """A staff list: its model, table, template and ``optimise`` are all it says."""

    partial_template_name = "components/table.html"


class StaffEdit(StaffOnly, PortalEditView):
    """A staff form saved by one ``do_save_*`` service: called without the row to create
    it, with the row as ``instance_arg`` to change it; the form is given the user."""

    template_name = "vps/staff/form.html"
    save_service = None
    instance_arg = ""

    def form_kwargs(self) -> dict:
        return {"user": self.request.user}

    @classmethod
    def create_service(cls, *, actor, data):
        return cls.save_service(actor=actor, data=data)

    @classmethod
    def update_service(cls, obj, *, actor, data):
        return cls.save_service(actor=actor, data=data, **{cls.instance_arg: obj})


# -- capacity -----------------------------------------------------------------------------
def with_usage(qs: QuerySet) -> QuerySet:
    """Hypervisors with what their VPSes (not deleted) take, in the same query."""
    live = Q(vpses__state__in=LIVE_STATES)
    return qs.select_related("server").annotate(
        used_vcpus=Sum("vpses__vcpus", filter=live, default=0),
        used_memory=Sum("vpses__memory_mib", filter=live, default=0),
        used_disk=Sum("vpses__disk_gib", filter=live, default=0),
        vps_count=Count("vpses", filter=live),
    )


def capacity(hv: Hypervisor) -> list[dict]:
    """vCPUs, memory and storage: used against what plans may take after overcommit (the
    annotations of ``with_usage``)."""
    rows = [
        ("vCPUs", hv.used_vcpus, hv.cpus, hv.cpu_ratio, ""),
        ("Memory", hv.used_memory / 1024, hv.memory_mib / 1024, hv.memory_ratio, " GiB"),
        ("Storage", hv.used_disk, hv.storage_gib, hv.disk_ratio, " GiB"),
    ]
    out = []
    for label, used, total, ratio, unit in rows:
        limit = total * ratio
        out.append(
            {
                "label": label,
                "used": _num(used),
                "total": _num(total),
                "limit": _num(limit),
                "ratio": _num(ratio),
                "unit": unit,
                "percent": round(100 * used / limit) if limit else None,
                "over": used > limit,
            }
        )
    return out


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


HYPERVISOR_TABLE = Table(
    columns=(
        Column("Hypervisor"),
        Column("Status"),
        Column("vCPUs"),
        Column("Memory", "hidden sm:table-cell"),
        Column("Storage", "hidden md:table-cell"),
        Column("VPSes", "hidden lg:table-cell"),
    ),
    row_template="vps/staff/partials/hypervisor_row.html",
    empty_icon="server",
    empty_text="No hypervisors yet.",
    testid="hypervisor-table",
)


class HypervisorList(StaffList):
    model = Hypervisor
    filterset_class = HypervisorFilter
    table = HYPERVISOR_TABLE
    template_name = "vps/staff/hypervisor_list.html"

    def optimise(self, qs):
        return with_usage(qs).order_by("server__name", "pk")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        for hv in ctx["object_list"]:
            hv.capacity = capacity(hv)
        return ctx


class HypervisorDetail(PortalDetailView):
    model = Hypervisor
    template_name = "vps/staff/hypervisor_detail.html"
    actions = (CHANGE, DELETE, APPLY)
    vps_shown = 50

    def optimise(self, qs):
        return with_usage(qs)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        hv = self.object
        hv.capacity = capacity(hv)
        vpses = (
            restrict(Vps, self.request.user)
            .filter(hypervisor=hv, state__in=LIVE_STATES)
            .select_related("owner", "plan")
            .order_by("hostname", "pk")
        )
        ctx["vpses"] = list(vpses[: self.vps_shown])
        pools = with_used(restrict(IpPool, self.request.user).filter(hypervisor=hv))
        ctx["ip_pools"] = [with_free(p) for p in pools.order_by("name", "pk")]
        return ctx


class HypervisorEdit(StaffEdit):
    model, form_class = Hypervisor, HypervisorForm
    save_service, instance_arg = staticmethod(services.do_save_hypervisor), "hypervisor"
    created_message = "Hypervisor {object} added: its inventory is being read."
    saved_message = "{object} saved: its inventory is being read again."


class HypervisorRefresh(PortalActionView):
    model, action = Hypervisor, APPLY
    service = staticmethod(services.start_refresh)


class HypervisorDelete(PortalDeleteView):
    model = Hypervisor
    delete_service = staticmethod(services.do_delete_hypervisor)
    success_url = "/vps/hypervisors/"


# -- plans --------------------------------------------------------------------------------
PLAN_TABLE = Table(
    columns=(
        Column("Plan"),
        Column("Resources"),
        Column("Addresses", "hidden md:table-cell"),
        Column("Snapshots", "hidden md:table-cell"),
        Column("Price", "hidden sm:table-cell"),
        Column("Seller", "hidden lg:table-cell"),
        Column("VPSes", "hidden lg:table-cell"),
        Column("Actions"),
    ),
    row_template="vps/staff/partials/plan_row.html",
    empty_icon="cpu",
    empty_text="No VPS plans yet.",
    testid="vps-plan-table",
)


class PlanList(StaffList):
    """Staff see every plan; a reseller its own, with its allowance above the list."""

    model = VpsPlan
    table = PLAN_TABLE
    template_name = "vps/staff/plan_list.html"

    def optimise(self, qs):
        qs = qs.select_related("owner", "allowance_for").annotate(vps_count=Count("vpses"))
        # Edit and delete buttons from the policy, in the list's own query.
        return annotate_permissions(qs, self.request.user, (CHANGE, DELETE)).order_by(
            "price", "name", "pk"
        )

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        user = self.request.user
        ctx["allowance"] = VpsPlan.objects.filter(allowance_for=user).first()
        return ctx


class PlanEdit(StaffEdit):
    model, form_class = VpsPlan, PlanForm
    save_service, instance_arg = staticmethod(services.do_save_plan), "plan"

    def success_url(self, obj) -> str:
        return reverse("vps_plans")


class PlanDelete(PortalDeleteView):
    model = VpsPlan
    delete_service = staticmethod(services.do_delete_plan)
    success_url = "/vps/plans/"


# -- images -------------------------------------------------------------------------------
IMAGE_TABLE = Table(
    columns=(
        Column("Image"),
        Column("Format"),
        Column("Virtual size", "hidden sm:table-cell"),
        Column("File size", "hidden md:table-cell"),
        Column("Offered", "hidden sm:table-cell"),
        Column("VPSes", "hidden lg:table-cell"),
    ),
    row_template="vps/staff/partials/image_row.html",
    empty_icon="database",
    empty_text="No images yet.",
    testid="image-table",
)


class ImageList(StaffList):
    model = Image
    table = IMAGE_TABLE
    template_name = "vps/staff/image_list.html"

    def optimise(self, qs):
        live = Q(vpses__state__in=LIVE_STATES)
        return qs.annotate(vps_count=Count("vpses", filter=live)).order_by("name", "pk")


class ImageDetail(PortalDetailView):
    model = Image
    template_name = "vps/staff/image_detail.html"

    def optimise(self, qs):
        live = Q(vpses__state__in=LIVE_STATES)
        return qs.annotate(vps_count=Count("vpses", filter=live))

    def get_context_data(self, **kwargs):
        from core.models import Operation

        ctx = super().get_context_data(**kwargs)
        ctx["copies"] = list(
            Operation.objects.filter(
                kind="vps.image_upload", target_id=str(self.object.uuid)
            ).order_by("-created_at")[:10]
        )
        return ctx


class ImageCopy(PortalActionView):
    """Copy the image into every enabled hypervisor's pool (an Operation each)."""

    model, action = Image, APPLY
    service = staticmethod(services.do_copy_image)
    message = "Copying the image to the hypervisors: follow each copy below."


def _create_image(*, actor, data: dict) -> Image:
    # The service takes the uploaded file apart from the image's fields.
    upload = data.pop("file")
    return services.do_create_image(actor=actor, data=data, upload=upload)


class ImageEdit(StaffOnly, PortalEditView):
    model = Image
    template_name = "vps/staff/form.html"
    create_service = staticmethod(_create_image)
    update_service = staticmethod(services.do_update_image)
    created_message = "Image {object} added: qemu-img found it sound."

    @property
    def form_class(self):
        return ImageForm if self.kwargs.get("uuid") else ImageUploadForm

    def form_kwargs(self) -> dict:
        return {}


class ImageDelete(PortalDeleteView):
    model = Image
    delete_service = staticmethod(services.do_delete_image)
    success_url = "/vps/images/"


# -- IP pools -----------------------------------------------------------------------------
def with_used(qs: QuerySet) -> QuerySet:
    """Pools with how many of their addresses are held, in the same query."""
    return qs.select_related("hypervisor__server").annotate(used=Count("addresses"))


def with_free(pool: IpPool) -> IpPool:
    """Free addresses: the range less those held and the gateway when it lies inside."""
    first, last = int(ipaddress.ip_address(pool.first)), int(ipaddress.ip_address(pool.last))
    gateway_inside = first <= int(ipaddress.ip_address(pool.gateway)) <= last
    pool.free = max(pool.size - pool.used - gateway_inside, 0)
    return pool


POOL_TABLE = Table(
    columns=(
        Column("Pool"),
        Column("Range"),
        Column("Hypervisor", "hidden sm:table-cell"),
        Column("Used"),
        Column("Free"),
    ),
    row_template="vps/staff/partials/pool_row.html",
    empty_icon="network",
    empty_text="No IP pools yet.",
    testid="pool-table",
)


class PoolList(StaffList):
    model = IpPool
    filterset_class = IpPoolFilter
    table = POOL_TABLE
    template_name = "vps/staff/pool_list.html"

    def optimise(self, qs):
        return with_used(qs).order_by("hypervisor__server__name", "name", "pk")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        for pool in ctx["object_list"]:
            with_free(pool)
        ctx["hypervisors"] = restrict(Hypervisor, self.request.user).select_related("server")
        return ctx


class PoolDetail(PortalDetailView):
    model = IpPool
    template_name = "vps/staff/pool_detail.html"
    addresses_shown = 200

    def optimise(self, qs):
        return with_used(qs)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        with_free(self.object)
        ctx["addresses"] = list(
            restrict(IpAddress, self.request.user, VIEW)
            .filter(pool=self.object)
            .select_related("vps")
            .order_by("allocated_at", "pk")[: self.addresses_shown]
        )
        return ctx


class PoolEdit(StaffEdit):
    model, form_class = IpPool, PoolForm
    save_service, instance_arg = staticmethod(services.do_save_pool), "pool"


class PoolDelete(PortalDeleteView):
    model = IpPool
    delete_service = staticmethod(services.do_delete_pool)
    success_url = "/vps/pools/"
