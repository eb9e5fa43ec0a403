"""The VPS area of the portal: the list (from the database, paged), the create form, a
VPS's page with its actions (each confirmed) and snapshots, and SSH keys. Nothing here
talks to libvirt: actions start Operations, whose pages show their progress live."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views import View

from core.generic import (
    PortalDeleteView,
    PortalDetailView,
    PortalEditView,
    PortalListView,
    get_for_user,
    redirect_htmx_aware,
)
from core.policy import APPLY, CHANGE, DELETE, restrict
from core.tables import Column, Table
from vps import libvirt_adapter, services
from vps.filters import VpsFilter
from vps.forms import ReinstallForm, RenewForm, ResizeForm, SnapshotForm, SshKeyForm, VpsForm
from vps.models import RENEW, Snapshot, SshKey, Vps

VPS_TABLE = Table(
    columns=(
        Column("Host name"),
        Column("State"),
        Column("Plan", "hidden sm:table-cell"),
        Column("Addresses", "hidden md:table-cell"),
        Column("Owner", "hidden lg:table-cell"),
    ),
    row_template="vps/partials/vps_row.html",
    empty_icon="cpu",
    empty_text="No VPSes yet.",
    testid="vps-table",
)
# What each action says on its confirmation page.
ACTIONS = {
    "start": ("Start", "The VPS boots."),
    "shutdown": (
        "Shut down",
        "The guest is asked to power off (ACPI); if it has not "
        "stopped after the timeout it is forced off.",
    ),
    "reboot": ("Reboot", "The guest restarts."),
    "force_off": ("Force off", "Like pulling the plug: unsaved data in the guest is lost."),
    "suspend": ("Suspend", "The VPS is paused in memory."),
    "resume": ("Resume", "The paused VPS runs again."),
}


class VpsList(PortalListView):
    model = Vps
    filterset_class = VpsFilter
    table = VPS_TABLE
    template_name = "vps/vps_list.html"
    partial_template_name = "components/table.html"

    def get_queryset(self):
        return super().get_queryset().exclude(state=Vps.State.DELETED)

    def optimise(self, qs):
        return qs.select_related("owner", "plan").prefetch_related("addresses")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["libvirt_installed"] = libvirt_adapter.available()
        return ctx


class VpsCreate(PortalEditView):
    model = Vps
    form_class = VpsForm
    template_name = "vps/vps_form.html"
    create_service = staticmethod(services.do_create_vps)
    created_message = "Creating {object}: follow its progress on its page."

    def form_kwargs(self) -> dict:
        return {"user": self.request.user}

    def service_data(self, form) -> dict:
        data = dict(form.cleaned_data)
        data["ssh_keys"] = list(data.get("ssh_keys") or [])
        return data


class VpsDetail(PortalDetailView):
    model = Vps
    template_name = "vps/vps_detail.html"
    actions = (CHANGE, DELETE, APPLY, RENEW)

    def optimise(self, qs):
        return qs.exclude(state=Vps.State.DELETED).select_related(
            "plan", "image", "owner", "hypervisor__server"
        )

    def get_context_data(self, **kwargs):
        from core.models import Operation

        ctx = super().get_context_data(**kwargs)
        vps = self.object
        ctx["addresses"] = list(vps.addresses.values_list("address", flat=True))
        ctx["snapshots"] = list(vps.snapshots.all())
        ctx["operations"] = list(
            Operation.objects.filter(target_id=str(vps.uuid)).order_by("-created_at")[:5]
        )
        ctx["power_actions"] = [(k, v[0]) for k, v in ACTIONS.items()]
        ctx["snapshot_form"] = SnapshotForm()
        return ctx


class VpsPower(View):
    """GET: what the action does and a button; POST: start it (an Operation)."""

    def _target(self, request, uuid, action):
        if action not in ACTIONS:
            raise Http404
        return get_for_user(Vps, request.user, APPLY, uuid=uuid)

    def get(self, request, uuid, action):
        vps = self._target(request, uuid, action)
        title, text = ACTIONS[action]
        return render(
            request,
            "vps/confirm_action.html",
            {"object": vps, "title": title, "text": text, "action": action},
        )

    def post(self, request, uuid, action):
        vps = self._target(request, uuid, action)
        try:
            op = services.do_power(vps, actor=request.user, action=action)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, vps.get_absolute_url())
        return redirect_htmx_aware(request, op.get_absolute_url())


class VpsChange(View):
    """Reinstall or resize: GET a form saying what happens, POST starts the Operation."""

    # action -> (title, what it does, form, service)
    CHANGES = {
        "reinstall": (
            "Reinstall",
            "The VPS is stopped, its disk replaced by a fresh copy of the image (same size) "
            "with your SSH keys and addresses, and started. Everything on the disk and every "
            "snapshot is deleted.",
            ReinstallForm,
            services.do_reinstall_vps,
        ),
        "resize": (
            "Change plan of",
            "The VPS is shut down, given the plan's vCPUs, memory and disk, and started again "
            "if it was running. A disk only grows: a plan with a smaller disk is refused.",
            ResizeForm,
            services.do_resize_vps,
        ),
    }

    def _form(self, request, action, data=None):
        form_class = self.CHANGES[action][2]
        kwargs = {"user": request.user} if form_class is ResizeForm else {}
        return form_class(data, **kwargs)

    def _render(self, request, vps, action, form, status=200):
        title, text, *_ = self.CHANGES[action]
        ctx = {"object": vps, "title": title, "text": text, "form": form, "action": action}
        return render(request, "vps/vps_change.html", ctx, status=status)

    def _target(self, request, uuid, action):
        if action not in self.CHANGES:
            raise Http404
        return get_for_user(Vps, request.user, APPLY, uuid=uuid)

    def get(self, request, uuid, action):
        vps = self._target(request, uuid, action)
        form = self._form(request, action)
        if action == "reinstall" and vps.image_id:
            form.initial["image"] = vps.image_id
        return self._render(request, vps, action, form)

    def post(self, request, uuid, action):
        from core.generic import form_errors_from

        vps = self._target(request, uuid, action)
        form = self._form(request, action, request.POST)
        if form.is_valid():
            data = {k: v for k, v in form.cleaned_data.items() if k != "confirm"}
            try:
                op = self.CHANGES[action][3](vps, actor=request.user, data=data)
            except ValidationError as exc:
                form_errors_from(form, exc)
            else:
                return redirect_htmx_aware(request, op.get_absolute_url())
        return self._render(request, vps, action, form, status=400)


class VpsRenew(View):
    """Administrators: a new expiry (or none). GET says what happens, POST writes it; a
    suspended (expired) VPS becomes stopped, so its owner can start it again."""

    TEXT = (
        "The VPS gets the new expiry (none when left empty). If it is suspended because it "
        "expired, it becomes stopped and its owner can start it again."
    )

    def _target(self, request, uuid):
        qs = restrict(Vps.objects.exclude(state=Vps.State.DELETED), request.user, RENEW)
        return get_object_or_404(qs.select_related("plan", "image"), uuid=uuid)

    def _render(self, request, vps, form, status=200):
        ctx = {"object": vps, "title": "Renew", "text": self.TEXT, "form": form}
        ctx["action"] = "renew"
        return render(request, "vps/vps_change.html", ctx, status=status)

    def get(self, request, uuid):
        from datetime import timedelta

        from django.utils import timezone

        vps = self._target(request, uuid)
        # Suggest 30 days past the current expiry (or from now, when it has passed).
        start = max(vps.expires_at or timezone.now(), timezone.now())
        form = RenewForm(initial={"expires_at": start + timedelta(days=30)})
        return self._render(request, vps, form)

    def post(self, request, uuid):
        from core.generic import form_errors_from

        vps = self._target(request, uuid)
        form = RenewForm(request.POST)
        if form.is_valid():
            try:
                services.do_renew_vps(vps, actor=request.user, data=form.cleaned_data)
            except ValidationError as exc:
                form_errors_from(form, exc)
            else:
                until = vps.expires_at
                messages.success(
                    request,
                    f"{vps} renewed until {until:%Y-%m-%d %H:%M}." if until else f"{vps} renewed.",
                )
                return redirect_htmx_aware(request, vps.get_absolute_url())
        return self._render(request, vps, form, status=400)


class VpsDelete(PortalDeleteView):
    model = Vps
    delete_service = staticmethod(services.do_delete_vps)
    success_url = "/vps/"


class SnapshotCreate(View):
    http_method_names = ["post"]

    def post(self, request, uuid):
        vps = get_for_user(Vps, request.user, APPLY, uuid=uuid)
        form = SnapshotForm(request.POST)
        try:
            if not form.is_valid():
                raise ValidationError(form.errors.get("name", ["Give the snapshot a name."]))
            services.do_create_snapshot(vps, actor=request.user, data=form.cleaned_data)
            messages.success(request, "Taking the snapshot.")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        return redirect_htmx_aware(request, vps.get_absolute_url())


class SnapshotAction(View):
    """POST revert or delete, on a snapshot of a VPS the user may act on."""

    http_method_names = ["post"]

    def post(self, request, uuid, snapshot, action):
        vps = get_for_user(Vps, request.user, APPLY, uuid=uuid)
        snap = get_object_or_404(restrict(Snapshot, request.user, APPLY), vps=vps, uuid=snapshot)
        starter = {"revert": services.do_revert_snapshot, "delete": services.do_delete_snapshot}
        if action not in starter:
            raise Http404
        try:
            op = starter[action](snap, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, vps.get_absolute_url())
        return redirect_htmx_aware(request, op.get_absolute_url())


class SshKeyList(View):
    """The user's SSH keys and a form to add one."""

    def _render(self, request, form, status=200):
        keys = restrict(SshKey, request.user).filter(owner=request.user)
        return render(request, "vps/ssh_keys.html", {"keys": keys, "form": form}, status=status)

    def get(self, request):
        return self._render(request, SshKeyForm())

    def post(self, request):
        form = SshKeyForm(request.POST)
        if form.is_valid():
            try:
                key = services.do_save_ssh_key(actor=request.user, data=form.cleaned_data)
            except ValidationError as exc:
                from core.generic import form_errors_from

                form_errors_from(form, exc)
            else:
                messages.success(request, f"Key {key.name} added.")
                return redirect_htmx_aware(request, "/vps/keys/")
        return self._render(request, form, status=400)


class SshKeyDelete(View):
    http_method_names = ["post"]

    def post(self, request, uuid):
        key = get_for_user(SshKey, request.user, DELETE, uuid=uuid)
        services.do_delete_ssh_key(key, actor=request.user)
        messages.success(request, f"Key {key.name} deleted.")
        return redirect_htmx_aware(request, "/vps/keys/")
