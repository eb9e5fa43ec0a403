from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
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
    is_htmx,
    redirect_htmx_aware,
)
from core.models import Operation
from core.policy import ADD, CHANGE, DELETE, may, restrict
from core.sections import sections_for
from core.tables import Column, Table
from websites import dnscheck, names, plans, services
from websites.bandwidth import this_month
from websites.checks import own_addresses
from websites.filters import WebsiteFilter
from websites.forms import (
    WWW_REDIRECTS,
    AliasesForm,
    AppEnvForm,
    AuthPathForm,
    AuthRemoveForm,
    PhpVersionForm,
    SftpPasswordForm,
    SshKeyForm,
    StartCommandForm,
    WebsiteCreateForm,
)
from websites.models import Plan, SystemAccount, Website
from websites.options import parse_options, without_hashes

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
SERVER_UNSHOWN = [
    f"server__{name}"
    for name in ("private_key", "password", "profile", "facts", "components", "bans")
]
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
        # A row shows its server's name: the server's secrets are not decrypted, nor its
        # facts parsed, once per row.
        return qs.select_related("server", "owner").defer(*SERVER_UNSHOWN)

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
    """The creation wizard: names (with where their DNS points), server and kind, options,
    review; then the Operation's live page shows the site being brought to its server.

    One form holds every field, so Back and Next keep what was typed (the steps not shown
    are only hidden). ``go`` names the step to show; the steps before it are validated
    first and an error sends the user back to its step. Without JavaScript the page is
    the single form (every step shown) and its button creates the site."""

    template_name = "websites/website_form.html"
    partial_template_name = "websites/partials/website_wizard.html"
    REVIEW = len(WebsiteCreateForm.STEPS) - 1

    def get(self, request):
        if not may(request.user, ADD, Website):
            raise Http404
        return self._render(request, WebsiteCreateForm(user=request.user), 0)

    def post(self, request):
        if not may(request.user, ADD, Website):
            raise Http404
        go = request.POST.get("go", "create")
        if go != "create":
            return self._step(request, go)
        form = WebsiteCreateForm(request.POST, user=request.user)
        if _check_steps(form, request.user, self.REVIEW):
            try:
                site = services.do_create_website(actor=request.user, data=form.service_data())
            except ValidationError as exc:
                form_errors_from(form, exc)
            else:
                _request_tls(request, form, site)
                messages.success(request, f"{site.domain_display} is being set up.")
                return redirect_htmx_aware(request, site.operation.get_absolute_url())
        return self._render(request, form, _first_error_step(form), status=400)

    def _step(self, request, go: str):
        try:
            step = min(max(int(go), 0), self.REVIEW)
            current = min(max(int(request.POST.get("step", "0")), 0), self.REVIEW)
        except ValueError:
            step, current = 0, 0
        checking = request.POST.get("check") == "dns"  # "Check DNS" on the names step
        if step <= current and not checking:  # back: nothing to check
            initial = request.POST.dict()
            for name, field in WebsiteCreateForm.base_fields.items():
                if isinstance(field, forms.BooleanField):  # an unticked box is not posted
                    initial[name] = name in request.POST
            form = WebsiteCreateForm(initial=initial, user=request.user)
            return self._render(request, form, step)
        form = WebsiteCreateForm(request.POST, user=request.user)
        if not _check_steps(form, request.user, max(step, 1) if checking else step):
            return self._render(request, form, _first_error_step(form), status=400)
        for field in list(form.errors):  # later steps' errors wait until they are shown
            if form.step_of(field) >= step:
                del form.errors[field]
        return self._render(request, form, step, dns=_dns_report(form, request.user))

    def _render(self, request, form, step: int, *, status: int = 200, dns=None):
        ctx = {
            "form": form,
            "step": step,
            "steps": [
                {"key": key, "label": label, "fields": [form[f] for f in shown if f in form.fields]}
                for key, label, shown in form.STEPS
            ],
            "dns": dns,
            "acme_auto": settings.PANEL_ACME_AUTO,
        }
        if step == self.REVIEW and form.is_bound and not form.errors:
            ctx["review"] = _review(form, request.user)
        if is_htmx(request):  # htmx swaps only 2xx answers: errors are in the fragment
            return render(request, self.partial_template_name, ctx)
        return render(request, self.template_name, ctx, status=status)


def _check_steps(form: WebsiteCreateForm, user, upto: int) -> bool:
    """Validate the steps before ``upto`` as the service will (names free, kind and PHP
    version allowed, options valid) without writing anything."""
    form.is_valid()
    fields = form.step_fields(upto)
    if any(f in form.errors for f in fields) or (
        form.non_field_errors() and upto == WebsiteCreate.REVIEW
    ):
        return False
    data = form.cleaned_data
    try:
        domain = names.to_ascii(data["domain"])
    except ValidationError as exc:
        form.add_error("domain", exc)
        return False
    try:
        aliases = names.normalize_aliases(domain, data.get("aliases", ""))
    except ValidationError as exc:
        form.add_error("aliases", exc)
        return False
    all_names = [domain, *aliases.split()]
    for name in names.name_conflicts(all_names):
        field = "domain" if name == domain else "aliases"
        form.add_error(field, f"{name} is already a name of another website.")
    if form.errors.keys() & {"domain", "aliases"} or "server" not in fields:
        return not form.errors.keys() & {"domain", "aliases"}
    service_data = form.service_data()
    site = Website(
        domain=domain,
        aliases=aliases,
        server=data["server"],
        owner=user,
        kind=data["kind"],
        php_version=service_data["php_version"],
        upstream=(service_data["upstream"] or "").strip(),
        start_command=service_data["start_command"],
    )
    try:
        if site.is_app:
            site.start_command = services.start_command_of(site.start_command, site.kind)
        services.check_kind(site, user)
        plans.check_allowed(user, kind=site.kind, php_version=site.php_version or None)
    except ValidationError as exc:
        form_errors_from(form, exc)
        return False
    if "www_redirect" not in fields:
        return True
    try:
        parse_options(
            form.options(), names=tuple(all_names), own_addresses=own_addresses(site.server)
        )
    except ValidationError as exc:
        for message in exc.messages:
            option, _, text = message.partition(": ")
            form.add_error(option if option in form.fields else None, text or message)
        return False
    return True


def _first_error_step(form: WebsiteCreateForm) -> int:
    steps = [form.step_of(f) for f in form.errors if f in form.fields]
    return min(steps) if steps else WebsiteCreate.REVIEW


def _dns_report(form: WebsiteCreateForm, user) -> list | None:
    """Where the names point (step 1 on, once they are valid): advice before creating."""
    data = getattr(form, "cleaned_data", {})
    if "domain" not in data or form.errors.keys() & {"domain", "aliases"}:
        return None
    domain = names.to_ascii(data["domain"])
    all_names = [domain, *names.normalize_aliases(domain, data.get("aliases", "")).split()]
    return dnscheck.check_names(all_names, services.hosting_servers(user))


def _review(form: WebsiteCreateForm, user) -> dict:
    data = form.cleaned_data
    service_data = form.service_data()
    server = data["server"]
    domain = names.to_ascii(data["domain"])
    all_names = [domain, *names.normalize_aliases(domain, data.get("aliases", "")).split()]
    plan = plans.plan_of(user)
    owners = get_user_model().objects.filter(pk=user.pk)
    return {
        "names": [names.to_unicode(n) for n in all_names],
        "server": server,
        "kind": dict(Website.Kind.choices).get(data["kind"], data["kind"]),
        "php_version": service_data["php_version"],
        "upstream": service_data["upstream"],
        "start_command": service_data["start_command"],
        "www_redirect": dict(WWW_REDIRECTS).get(data.get("www_redirect") or ""),
        "https_redirect": bool(data.get("https_redirect")),
        "tls": data.get("tls", True),
        "site_number": plans.usage(owners, "websites") + 1,
        "site_limit": plan.websites if plan else None,
    }


def _request_tls(request, form: WebsiteCreateForm, site: Website) -> None:
    """The wizard's "HTTPS certificate" box (shown when the panel does not order one by
    itself): the order is queued behind the site's own Operation on the server's lock."""
    if "tls" not in form.fields or not form.cleaned_data.get("tls"):
        return
    from websites.certificates.services import request_certificate

    try:
        request_certificate(site, actor=request.user)
    except ValidationError as exc:
        messages.warning(request, "No certificate requested: " + " ".join(exc.messages))


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
            auth_paths=without_hashes(site.options or {}).get("auth_paths", []),
            auth_form=AuthPathForm(),
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


class ProtectPath(_SiteForm):
    form_class = AuthPathForm
    done = "Path protected; the site is being applied."

    def run(self, request, site, data):
        return services.do_protect_path(site, actor=request.user, data=data)


class SetAuthUser(_SiteForm):
    form_class = AuthPathForm
    done = "User saved; the site is being applied."

    def run(self, request, site, data):
        return services.do_set_auth_user(site, actor=request.user, data=data)


class UnprotectPath(_SiteForm):
    form_class = AuthRemoveForm
    done = "Protection removed; the site is being applied."

    def run(self, request, site, data):
        return services.do_unprotect_path(site, actor=request.user, data={"path": data["path"]})


class RemoveAuthUser(_SiteForm):
    form_class = AuthRemoveForm
    done = "User removed; the site is being applied."

    def run(self, request, site, data):
        return services.do_remove_auth_user(site, actor=request.user, data=data)


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


class FollowLogs(View):
    """Follow the site's logs on its page: an Operation streams the lines (views never open
    SSH); the page listens to the operation's log over its live socket (nothing is polled)
    and cancels it when it closes. Without htmx: the operation's own page, live as well."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        from core.events import current_seq
        from core.generic import is_htmx

        site = get_for_user(Website, request.user, CHANGE, uuid=uuid)
        since = current_seq()
        try:
            op = services.start_follow_logs(site, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, site.get_absolute_url())
        if not is_htmx(request):
            return redirect_htmx_aware(request, op.get_absolute_url())
        return render(request, "websites/partials/log_follow.html", {"op": op, "live_since": since})


class WebsiteDelete(PortalDeleteView):
    model = Website
    delete_service = staticmethod(services.do_delete_website)
    success_url = "/websites/"
