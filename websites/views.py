from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views import View

from core.generic import (
    PortalActionView,
    PortalDeleteView,
    PortalDetailView,
    PortalListView,
    form_errors_from,
    get_for_user,
    redirect_htmx_aware,
)
from core.models import Operation
from core.policy import ADD, CHANGE, DELETE, may, restrict
from core.sections import sections_for
from core.tables import Column, Table
from websites import plans, services
from websites.bandwidth import this_month
from websites.filters import WebsiteFilter
from websites.forms import (
    AliasesForm,
    AppEnvForm,
    PhpVersionForm,
    SftpPasswordForm,
    SshKeyForm,
    StartCommandForm,
    WebsiteCreateForm,
)
from websites.models import Plan, SystemAccount, Website

WEBSITE_TABLE = Table(
    columns=(
        Column("Domain"),
        Column("Status"),
        Column("Kind", "hidden md:table-cell"),
        Column("Server", "hidden sm:table-cell"),
        Column("Owner", "hidden lg:table-cell"),
    ),
    row_template="websites/partials/website_row.html",
    empty_icon="globe",
    empty_text="No websites yet.",
    testid="websites-table",
)
SORTS = [
    ("", "Domain, A to Z"),
    ("-domain", "Domain, Z to A"),
    ("status", "Status"),
    ("-created", "Newest first"),
]


class WebsiteList(PortalListView):
    model = Website
    filterset_class = WebsiteFilter
    table = WEBSITE_TABLE
    template_name = "websites/website_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("server", "owner")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["sort_choices"] = SORTS
        if ctx["filterset"] and ctx["filterset"].form.changed_data:
            ctx["empty_text"] = "No website matches."
        plan = plans.plan_of(self.request.user)
        if plan is not None:
            ctx["plan"] = plan
            ctx["usage"] = plans.usage_report(self.request.user, plan)
        return ctx


PLAN_TABLE = Table(
    columns=(
        Column("Plan"),
        Column("Websites"),
        Column("Disk", "hidden sm:table-cell"),
        Column("Bandwidth", "hidden sm:table-cell"),
        Column("Databases", "hidden md:table-cell"),
        Column("PHP", "hidden md:table-cell"),
        Column("SFTP", "hidden lg:table-cell"),
        Column("Price", "hidden lg:table-cell"),
        Column("Subscribers"),
    ),
    row_template="websites/partials/plan_row.html",
    empty_icon="list-checks",
    empty_text="No plans yet: administrators and resellers add them in the API or the admin.",
    testid="plans-table",
)


class PlanList(PortalListView):
    """The plans a user may read: staff and resellers theirs, a customer the one they are on
    (websites.plans.visible_plans), with their subscriber count in the same query."""

    model = Plan
    table = PLAN_TABLE
    template_name = "websites/plan_list.html"
    partial_template_name = "components/table.html"

    def get_queryset(self):
        return (
            plans.visible_plans(self.request.user)
            .select_related("owner")
            .annotate(subscriber_count=Count("subscriptions", distinct=True))
            .order_by("name", "pk")
        )


class WebsiteCreate(View):
    """The creation wizard: one form, then the Operation's live page shows the site being
    brought to its server (account, web root, pool, vhost, reload, health check)."""

    template_name = "websites/website_form.html"

    def _form(self, request, data=None):
        return WebsiteCreateForm(data, user=request.user)

    def get(self, request):
        if not may(request.user, ADD, Website):
            raise Http404
        return render(request, self.template_name, {"form": self._form(request)})

    def post(self, request):
        if not may(request.user, ADD, Website):
            raise Http404
        form = self._form(request, request.POST)
        if form.is_valid():
            try:
                site = services.do_create_website(actor=request.user, data=dict(form.cleaned_data))
            except ValidationError as exc:
                form_errors_from(form, exc)
            else:
                messages.success(request, f"{site.domain} is being set up.")
                return redirect_htmx_aware(request, site.operation.get_absolute_url())
        return render(request, self.template_name, {"form": form}, status=400)


class WebsiteDetail(PortalDetailView):
    model = Website
    template_name = "websites/website_detail.html"
    actions = (CHANGE, DELETE)

    def optimise(self, qs):
        return qs.select_related("server", "owner")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        site = self.object
        user = self.request.user
        account = restrict(SystemAccount, user).filter(server=site.server, user=site.owner).first()
        plan = plans.plan_of(site.owner)
        ctx.update(
            account=account,
            plan=plan,
            sftp_allowed=plan is None or plan.sftp_allowed,
            php_form=PhpVersionForm(site=site),
            env_form=AppEnvForm(initial=AppEnvForm.initial_for(site)) if site.is_app else None,
            command_form=StartCommandForm(initial={"start_command": site.start_command})
            if site.is_app
            else None,
            aliases_form=AliasesForm(initial={"aliases": site.aliases_display}),
            sections=sections_for("websites.website_detail", site, user),
            traffic=site.traffic.filter(month=this_month()).values_list("bytes", flat=True).first()
            or 0,
            password_form=SftpPasswordForm(),
            key_form=SshKeyForm(initial={"ssh_key": account.ssh_key if account else ""}),
            may_suspend=_may_suspend(user, site),
            operations=restrict(Operation, user)
            .filter(target_id=str(site.uuid))
            .select_related("requested_by")
            .order_by("-created_at")[:8],
        )
        return ctx


def _may_suspend(user, site) -> bool:
    try:
        services._may_suspend(user, site)
    except ValidationError:
        return False
    return True


class _SiteForm(View):
    """POST a small form about one site the user may change."""

    http_method_names = ["post"]
    form_class = None

    def post(self, request, uuid):
        site = get_for_user(Website, request.user, CHANGE, uuid=uuid)
        form = self.make_form(request, site)
        url = reverse("website", args=[site.uuid])
        if not form.is_valid():
            for errors in form.errors.values():
                messages.error(request, " ".join(errors))
            return redirect_htmx_aware(request, url)
        try:
            result = self.run(request, site, form.cleaned_data)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, url)
        if isinstance(result, Operation):
            return redirect_htmx_aware(request, result.get_absolute_url())
        messages.success(request, self.done)
        return redirect_htmx_aware(request, url)

    def make_form(self, request, site):
        return self.form_class(request.POST)


class EditAliases(_SiteForm):
    form_class = AliasesForm
    done = "Names changed; the site is being applied."

    def run(self, request, site, data):
        return services.do_update_website(
            site, actor=request.user, data={"aliases": data["aliases"]}
        )


class SwitchPhp(_SiteForm):
    done = "PHP version changed; the site is being applied."

    def make_form(self, request, site):
        return PhpVersionForm(request.POST, site=site)

    def run(self, request, site, data):
        return services.do_update_website(
            site, actor=request.user, data={"php_version": data["php_version"]}
        )


class EditStartCommand(_SiteForm):
    form_class = StartCommandForm
    done = "Start command changed; the app is being restarted with it."

    def run(self, request, site, data):
        return services.do_update_website(
            site, actor=request.user, data={"start_command": data["start_command"]}
        )


class EditAppEnv(_SiteForm):
    form_class = AppEnvForm
    done = "Environment saved; the app is being restarted with it."

    def run(self, request, site, data):
        form = AppEnvForm(request.POST)
        form.is_valid()
        try:
            changes = form.changes(site.env_vars())
        except forms.ValidationError as exc:
            raise ValidationError(exc.messages) from exc
        return services.do_update_website(site, actor=request.user, data={"app_env": changes})


def _app_action(action: str):
    return staticmethod(
        lambda site, *, actor: services.do_app_action(site, actor=actor, action=action)
    )


class StartApp(PortalActionView):
    model, service = Website, _app_action("start")


class StopApp(PortalActionView):
    model, service = Website, _app_action("stop")


class RestartApp(PortalActionView):
    model, service = Website, _app_action("restart")


class AppStatus(PortalActionView):
    model, service = Website, _app_action("status")


def _account(request, site) -> SystemAccount:
    account = (
        restrict(SystemAccount, request.user, CHANGE)
        .filter(server=site.server, user=site.owner)
        .first()
    )
    if account is None:
        raise ValidationError("This site has no system account yet.")
    return account


class SftpPassword(_SiteForm):
    form_class = SftpPasswordForm
    done = "Password set."

    def run(self, request, site, data):
        return services.do_set_sftp_password(
            _account(request, site), actor=request.user, password=data["password"]
        )


class SshKey(_SiteForm):
    form_class = SshKeyForm
    done = "SSH key saved; it reaches the server in a moment."

    def run(self, request, site, data):
        services.do_set_ssh_key(_account(request, site), actor=request.user, key=data["ssh_key"])


class SuspendWebsite(PortalActionView):
    model = Website
    service = staticmethod(
        lambda site, *, actor: services.do_suspend_website(site, actor=actor).operation
    )


class UnsuspendWebsite(PortalActionView):
    model = Website
    service = staticmethod(
        lambda site, *, actor: services.do_unsuspend_website(site, actor=actor).operation
    )


class RetryWebsite(PortalActionView):
    model = Website
    service = staticmethod(
        lambda site, *, actor: services.do_retry_website(site, actor=actor).operation
    )


class WebsiteLogs(PortalActionView):
    """The last lines of the site's access and error logs, read by an Operation (views never
    open SSH): its page shows them."""

    model = Website
    action = CHANGE
    service = staticmethod(services.start_read_logs)


class WebsiteDelete(PortalDeleteView):
    model = Website
    delete_service = staticmethod(services.do_delete_website)
    success_url = "/websites/"
