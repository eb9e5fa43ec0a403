"""Portal pages: mail domains, and on a domain's page its mailboxes and aliases/forwarders
(added, changed and deleted there). Each page costs the same few queries whatever the
number of rows."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache

from core.generic import (
    PortalActionView,
    PortalDeleteView,
    PortalListView,
    form_errors_from,
    get_for_user,
    redirect_htmx_aware,
)
from core.policy import (
    ADD,
    APPLY,
    CHANGE,
    DELETE,
    VIEW,
    annotate_permissions,
    collect_permissions,
    may,
    restrict,
)
from core.tables import Column, Table
from mail import dnsrecords, services
from mail.filters import MailDomainFilter
from mail.forms import MailAliasForm, MailboxEditForm, MailboxForm, MailDomainForm
from mail.models import MailAlias, Mailbox, MailDomain, MailServerState
from servers.models import Server

DOMAIN_TABLE = Table(
    columns=(
        Column("Domain"),
        Column("Status"),
        Column("Server", "hidden sm:table-cell"),
        Column("Owner", "hidden lg:table-cell"),
    ),
    row_template="mail/partials/domain_row.html",
    empty_icon="mail",
    empty_text="No mail domains yet.",
    testid="mail-domains-table",
)


class MailDomainList(PortalListView):
    model = MailDomain
    filterset_class = MailDomainFilter
    table = DOMAIN_TABLE
    template_name = "mail/domain_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("owner", "server")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["may_add"] = may(self.request.user, ADD, MailDomain)
        return ctx


@method_decorator(never_cache, name="dispatch")
class MailDomainCreate(View):
    template_name = "mail/domain_form.html"

    def _check(self, request):
        if not may(request.user, ADD, MailDomain):
            raise Http404

    def get(self, request):
        self._check(request)
        return render(request, self.template_name, {"form": MailDomainForm(user=request.user)})

    def post(self, request):
        self._check(request)
        form = MailDomainForm(request.POST, user=request.user)
        if form.is_valid():
            data = {k: v for k, v in form.cleaned_data.items() if v is not None}
            try:
                domain = services.do_create_mail_domain(actor=request.user, data=data)
            except ValidationError as exc:
                form_errors_from(form, exc)
            except PermissionDenied as exc:
                raise Http404 from exc
            else:
                messages.success(request, f"{domain} added: its mail server is being set up.")
                return redirect_htmx_aware(request, domain.get_absolute_url())
        return render(request, self.template_name, {"form": form}, status=400)


def _domain(request, uuid, action=VIEW) -> MailDomain:
    qs = restrict(MailDomain, request.user, action).select_related("owner", "server")
    qs = annotate_permissions(qs, request.user, (CHANGE, DELETE))
    try:
        domain = qs.get(uuid=uuid)
    except MailDomain.DoesNotExist as exc:
        raise Http404 from exc
    collect_permissions(domain, (CHANGE, DELETE))
    return domain


class MailDomainDetail(View):
    """A domain with its mailboxes and aliases: three queries, whatever their number."""

    def get(self, request, uuid):
        domain = _domain(request, uuid)
        return render(request, "mail/domain_detail.html", self.context(domain))

    @staticmethod
    def context(domain, **extra) -> dict:
        return {
            "domain": domain,
            "object": domain,
            "mailboxes": list(domain.mailboxes.all()),
            "aliases": list(domain.aliases.all()),
            "dns_records": dnsrecords.status(domain),
            "mailbox_form": MailboxForm(),
            "alias_form": MailAliasForm(),
            **extra,
        }


class MailDomainDelete(PortalDeleteView):
    model = MailDomain
    delete_service = staticmethod(services.do_delete_mail_domain)
    success_url = "/mail/"


class MailDomainSuspend(View):
    """POST suspended=1 suspends, 0 lifts it."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        domain = get_for_user(MailDomain, request.user, CHANGE, uuid=uuid)
        suspended = request.POST.get("suspended") == "1"
        services.do_update_mail_domain(domain, actor=request.user, data={"suspended": suspended})
        messages.success(request, f"{domain} {'suspended' if suspended else 'resumed'}.")
        return redirect_htmx_aware(request, domain.get_absolute_url())


class MailDomainDnsCheck(PortalActionView):
    """POST: ask the DNS for the domain's records (an Operation)."""

    model = MailDomain
    action = CHANGE
    service = staticmethod(services.start_dns_check)


class MailDomainSpamRules(View):
    """POST spam_allow and spam_deny: the senders (addresses or domains, one per line)
    always accepted and refused for mail to the domain."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        domain = get_for_user(MailDomain, request.user, CHANGE, uuid=uuid)
        data = {k: request.POST.get(k, "") for k in ("spam_allow", "spam_deny")}
        try:
            services.do_update_mail_domain(domain, actor=request.user, data=data)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Sender rules of {domain} saved.")
        return redirect_htmx_aware(request, domain.get_absolute_url())


class MailDomainCatchAll(View):
    """POST catch_all: the address receiving mail for addresses without a mailbox or alias
    (empty: none)."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        domain = get_for_user(MailDomain, request.user, CHANGE, uuid=uuid)
        value = request.POST.get("catch_all", "").strip()
        try:
            services.do_update_mail_domain(domain, actor=request.user, data={"catch_all": value})
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Catch-all of {domain}: {value or 'none'}.")
        return redirect_htmx_aware(request, domain.get_absolute_url())


class _AddToDomain(View):
    """POST a form to add a row to a domain; errors re-render the domain's page."""

    http_method_names = ["post"]
    form_class = MailboxForm
    form_name = "mailbox_form"
    service = None

    def post(self, request, uuid):
        domain = _domain(request, uuid, CHANGE)
        form = self.form_class(request.POST)
        if form.is_valid():
            try:
                row = type(self).service(
                    actor=request.user, data={**form.cleaned_data, "domain": domain}
                )
            except ValidationError as exc:
                form_errors_from(form, exc)
            except PermissionDenied as exc:
                raise Http404 from exc
            else:
                messages.success(request, f"{row} added.")
                return redirect_htmx_aware(request, domain.get_absolute_url())
        ctx = MailDomainDetail.context(domain, **{self.form_name: form})
        return render(request, "mail/domain_detail.html", ctx, status=400)


class MailboxAdd(_AddToDomain):
    service = staticmethod(services.do_create_mailbox)


class MailAliasAdd(_AddToDomain):
    form_class = MailAliasForm
    form_name = "alias_form"
    service = staticmethod(services.do_create_alias)


@method_decorator(never_cache, name="dispatch")
class MailboxEdit(View):
    template_name = "mail/mailbox_form.html"

    def _box(self, request, uuid) -> Mailbox:
        qs = restrict(Mailbox, request.user, CHANGE).select_related("domain")
        try:
            return qs.get(uuid=uuid)
        except Mailbox.DoesNotExist as exc:
            raise Http404 from exc

    def get(self, request, uuid):
        box = self._box(request, uuid)
        form = MailboxEditForm(
            initial={
                "quota_mb": box.quota_mb,
                "suspended": box.suspended,
                "send_limit_per_hour": box.send_limit_per_hour,
                "autoreply": box.autoreply,
                "autoreply_subject": box.autoreply_subject,
                "autoreply_body": box.autoreply_body,
                "autoreply_start": box.autoreply_start,
                "autoreply_end": box.autoreply_end,
            },
            user=request.user,
            box=box,
        )
        return render(request, self.template_name, {"form": form, "object": box})

    def post(self, request, uuid):
        box = self._box(request, uuid)
        form = MailboxEditForm(
            request.POST, initial={"send_limit_per_hour": box.send_limit_per_hour},
            user=request.user, box=box,
        )  # fmt: skip
        if form.is_valid():
            data = dict(form.cleaned_data)
            if not data.get("password"):
                data.pop("password", None)
            try:
                services.do_update_mailbox(box, actor=request.user, data=data)
            except ValidationError as exc:
                form_errors_from(form, exc)
            else:
                messages.success(request, f"{box} saved.")
                return redirect_htmx_aware(request, box.get_absolute_url())
        return render(request, self.template_name, {"form": form, "object": box}, status=400)


class MailboxDelete(PortalDeleteView):
    model = Mailbox
    delete_service = staticmethod(services.do_delete_mailbox)
    success_url = "/mail/"


class MailAliasDelete(PortalDeleteView):
    model = MailAlias
    delete_service = staticmethod(services.do_delete_alias)
    success_url = "/mail/"


class PrepareMail(PortalActionView):
    """POST: the "Prepare for mail" Operation on a server (mail/prepare.py)."""

    model = Server
    action = APPLY
    service = staticmethod(services.do_prepare_mail)


def server_mail(server, user) -> dict:
    """The mail card of a server's page: prepared or not, and the button."""
    info = (server.components or {}).get("mail") or {}
    return {"server": server, "mail": info, "may_prepare": may(user, APPLY, server)}


@method_decorator(never_cache, name="dispatch")
class MailQueue(View):
    """A mail server's queue as last read, for those who may apply to the server: read it
    again, retry or delete chosen messages (each an Operation)."""

    def get(self, request, uuid):
        server = get_for_user(Server, request.user, APPLY, uuid=uuid)
        state = MailServerState.objects.filter(server=server).first()
        return render(
            request,
            "mail/queue.html",
            {"server": server, "object": server, "state": state},
        )

    def post(self, request, uuid):
        server = get_for_user(Server, request.user, APPLY, uuid=uuid)
        what = request.POST.get("action", "")
        ids = request.POST.getlist("queue_ids")
        try:
            if what == "retry":
                op = services.do_retry_queued(server, actor=request.user, data={"queue_ids": ids})
            elif what == "delete":
                op = services.do_delete_queued(server, actor=request.user, data={"queue_ids": ids})
            else:
                op = services.start_read_queue(server, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, request.path)
        return redirect_htmx_aware(request, op.get_absolute_url())
