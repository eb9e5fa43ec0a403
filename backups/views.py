"""Portal pages: backups per account (snapshots, sizes, restore), the status board across
accounts (what the user may see: staff see all), and the staff's backup targets."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import render
from django.views import View

from backups import services
from backups.filters import BackupJobFilter, BackupTargetFilter
from backups.forms import BackupJobForm, BackupTargetForm, RestoreForm, TargetPasswordForm
from backups.models import BackupJob, BackupTarget
from core.generic import (
    PortalActionView,
    PortalDeleteView,
    PortalDetailView,
    PortalEditView,
    PortalFormActionView,
    PortalListView,
    form_errors_from,
    get_for_user,
    redirect_htmx_aware,
)
from core.models import Operation
from core.policy import CHANGE, DELETE, VIEW, may, restrict
from core.tables import Column, Table

JOB_TABLE = Table(
    columns=(
        Column("Account"),
        Column("Server", "hidden sm:table-cell"),
        Column("Target", "hidden md:table-cell"),
        Column("Status"),
        Column("Last success"),
        Column("Size", "hidden sm:table-cell"),
    ),
    row_template="backups/partials/job_row.html",
    empty_text="No backups set up yet.",
    testid="backup-jobs-table",
)
TARGET_TABLE = Table(
    columns=(
        Column("Name"),
        Column("Kind"),
        Column("Repository", "hidden sm:table-cell"),
        Column("Status"),
        Column("Free", "hidden md:table-cell"),
    ),
    row_template="backups/partials/target_row.html",
    empty_text="No backup targets yet.",
    testid="backup-targets-table",
)


def _operations(user, obj):
    return (
        restrict(Operation, user)
        .filter(target_id=str(obj.uuid))
        .select_related("requested_by")
        .order_by("-created_at")[:10]
    )


class BackupJobList(PortalListView):
    model = BackupJob
    filterset_class = BackupJobFilter
    table = JOB_TABLE
    template_name = "backups/job_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("account", "account__server", "target")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["may_see_targets"] = may(self.request.user, VIEW, BackupTarget)
        return ctx


class BackupJobDetail(PortalDetailView):
    model = BackupJob
    template_name = "backups/job_detail.html"
    actions = (CHANGE, DELETE)

    def optimise(self, qs):
        return qs.select_related("account", "account__server", "account__user", "target")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        job = self.object
        ctx.update(
            runs=job.runs.all()[:50],
            test_restores=job.test_restores.select_related("run")[:10],
            operations=_operations(self.request.user, job),
            restore_form=RestoreForm(job=job) if job.may.get(CHANGE) else None,
            may_edit=may(self.request.user, DELETE, job),
        )
        return ctx


class BackupJobEdit(PortalEditView):
    model = BackupJob
    form_class = BackupJobForm
    template_name = "backups/job_form.html"
    create_service = services.do_create_job
    update_service = services.do_update_job

    def form_kwargs(self) -> dict:
        return {"user": self.request.user}

    def get_object(self, request, uuid):
        obj = super().get_object(request, uuid)
        if obj is not None and not may(request.user, DELETE, obj):
            raise Http404  # owners restore, staff change the job
        return obj


class BackupJobDelete(PortalDeleteView):
    model = BackupJob
    delete_service = services.do_delete_job
    success_url = "/backups/"


class BackupJobRun(PortalActionView):
    model = BackupJob
    action = CHANGE
    service = services.start_backup


class BackupRestore(View):
    """POST: a dry-run summary (an Operation), or with ``confirm`` the restore itself."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        job = get_for_user(BackupJob, request.user, CHANGE, uuid=uuid)
        form = RestoreForm(request.POST, job=job)
        if form.is_valid():
            try:
                op = services.do_restore(
                    job,
                    actor=request.user,
                    data=form.service_data(),
                    dry_run=not form.cleaned_data.get("confirm"),
                )
                return redirect_htmx_aware(request, op.get_absolute_url())
            except ValidationError as exc:
                form_errors_from(form, exc)
            except PermissionDenied as exc:
                raise Http404 from exc
        messages.error(request, "The restore was not started: check the form.")
        ctx = {
            "object": job,
            "runs": job.runs.all()[:50],
            "test_restores": job.test_restores.select_related("run")[:10],
            "operations": _operations(request.user, job),
            "restore_form": form,
        }
        job.may = {CHANGE: True}
        return render(request, "backups/job_detail.html", ctx, status=400)


# --------------------------------------------------------------------- staff pages


class BackupTargetList(PortalListView):
    model = BackupTarget
    filterset_class = BackupTargetFilter
    table = TARGET_TABLE
    template_name = "backups/target_list.html"
    partial_template_name = "components/table.html"

    def get(self, request, *args, **kwargs):
        if not may(request.user, VIEW, BackupTarget):
            raise Http404
        return super().get(request, *args, **kwargs)

    def optimise(self, qs):
        return qs.select_related("server")


class BackupTargetDetail(PortalDetailView):
    model = BackupTarget
    template_name = "backups/target_detail.html"

    def optimise(self, qs):
        return qs.select_related("server")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx.update(
            job_count=self.object.jobs.count(),
            operations=_operations(self.request.user, self.object),
            password_form=TargetPasswordForm(),
        )
        return ctx


class BackupTargetEdit(PortalEditView):
    model = BackupTarget
    form_class = BackupTargetForm
    template_name = "backups/target_form.html"
    create_service = services.do_create_target
    update_service = services.do_update_target

    def form_kwargs(self) -> dict:
        return {"user": self.request.user}

    def service_data(self, form) -> dict:
        data = dict(form.cleaned_data)
        for name in services.TARGET_SECRETS:
            if not data.get(name):
                data.pop(name, None)
        return data


class BackupTargetDelete(PortalDeleteView):
    model = BackupTarget
    delete_service = services.do_delete_target
    success_url = "/backups/targets/"


class BackupTargetCheck(PortalActionView):
    model = BackupTarget
    action = CHANGE
    service = services.start_check_target


class BackupTargetVerify(PortalActionView):
    model = BackupTarget
    action = CHANGE
    service = services.start_verify_target


class BackupTargetPassword(PortalFormActionView):
    """POST: a new repository password (restic key add, then the old key removed), as an
    Operation."""

    model = BackupTarget
    form_class = TargetPasswordForm
    service = services.do_change_password


class BackupBrowse(View):
    """The snapshot browser: one folder of a snapshot at a time, from the listing an
    Operation made (GET shows it, paged; POST lists the folder). Each entry can be
    restored (a dry run first) to its place or elsewhere."""

    http_method_names = ["get", "post"]
    PAGE = 200

    def _context(self, request, uuid, source):
        from backups.models import BackupRun

        job = get_for_user(BackupJob, request.user, CHANGE, uuid=uuid)
        runs = job.runs.filter(state=BackupRun.State.SUCCEEDED, forgotten=False).exclude(
            snapshot_id=""
        )
        try:
            run = runs.filter(uuid=source.get("run")).first() if source.get("run") else None
        except ValidationError:
            run = None
        run = run or runs.first()
        if run is None:
            raise Http404
        home = (run.manifest or {}).get("home") or ""
        path = (source.get("path") or home).rstrip("/") or home
        return job, run, home, path

    def get(self, request, uuid):
        from django.core.paginator import Paginator

        from backups.models import SnapshotListing

        job, run, home, path = self._context(request, uuid, request.GET)
        listing = SnapshotListing.objects.filter(run=run, path=path).first()
        page = None
        if listing is not None:
            page = Paginator(listing.entries, self.PAGE).get_page(request.GET.get("page"))
        parts, crumbs = path[len(home) :].strip("/").split("/"), []
        for i, name in enumerate(p for p in parts if p):
            crumbs.append((name, home + "/" + "/".join(parts[: i + 1])))
        ctx = {
            "object": job,
            "run": run,
            "runs": job.runs.filter(state="succeeded", forgotten=False).exclude(snapshot_id=""),
            "home": home,
            "path": path,
            "parent": path.rsplit("/", 1)[0] if path != home else "",
            "crumbs": crumbs,
            "listing": listing,
            "page": page,
        }
        return render(request, "backups/browse.html", ctx)

    def post(self, request, uuid):
        from django.http import HttpResponseRedirect
        from django.utils.http import urlencode

        job, run, home, path = self._context(request, uuid, request.POST)
        try:
            services.start_browse(job, actor=request.user, run=run, path=path)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        except PermissionDenied as exc:
            raise Http404 from exc
        else:
            messages.success(request, f"Listing {path}: reload in a moment.")
        query = urlencode({"run": str(run.uuid), "path": path})
        return HttpResponseRedirect(f"{request.path}?{query}")
