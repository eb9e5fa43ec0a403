"""Portal pages: the certificates a user may see, and each site's TLS page (status, expiry,
issue or renew, upload). Issuing redirects to the Operation's page, which shows its progress
live."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import render

from core.generic import PortalListView, form_errors_from, get_for_user, redirect_htmx_aware
from core.policy import CHANGE, VIEW, may
from core.tables import Column, Table
from websites.certificates import services
from websites.certificates.filters import CertificateFilter
from websites.certificates.forms import IssueForm, UploadForm
from websites.certificates.models import Certificate
from websites.models import Website

CERTIFICATE_TABLE = Table(
    columns=(
        Column("Site"),
        Column("Names", "hidden md:table-cell"),
        Column("Source", "hidden sm:table-cell"),
        Column("Status"),
        Column("Expires"),
    ),
    row_template="certificates/partials/certificate_row.html",
    empty_icon="shield-check",
    empty_text="No certificates yet. Open a site's TLS page to issue one.",
    testid="certificates-table",
)


class CertificateList(PortalListView):
    model = Certificate
    filterset_class = CertificateFilter
    table = CERTIFICATE_TABLE
    template_name = "certificates/certificate_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("website").order_by("not_after", "website__domain")


def _page(request, site, issue_form=None, upload_form=None, status=200):
    cert = Certificate.objects.filter(website=site).first()
    return render(
        request,
        "certificates/site_tls.html",
        {
            "site": site,
            "cert": cert,
            "uncovered": services.uncovered_names(site, cert),
            "may_change": may(request.user, CHANGE, site),
            "issue_form": issue_form
            or IssueForm(
                initial={
                    "key_type": cert and cert.key_type,
                    "challenge": cert and cert.challenge,
                    "wildcard": cert and cert.wildcard,
                }
            ),
            "upload_form": upload_form or UploadForm(),
        },
        status=status,
    )


def site_tls(request, uuid):
    site = get_for_user(Website, request.user, VIEW, uuid=uuid)
    return _page(request, site)


def issue(request, uuid):
    site = get_for_user(Website, request.user, CHANGE, uuid=uuid)
    if request.method != "POST":
        return redirect_htmx_aware(request, _url(site))
    form = IssueForm(request.POST)
    if form.is_valid():
        try:
            op = services.request_certificate(site, actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form_errors_from(form, exc)
        else:
            return redirect_htmx_aware(request, op.get_absolute_url())
    return _page(request, site, issue_form=form, status=400)


def upload(request, uuid):
    site = get_for_user(Website, request.user, CHANGE, uuid=uuid)
    if request.method != "POST":
        return redirect_htmx_aware(request, _url(site))
    form = UploadForm(request.POST)
    if form.is_valid():
        try:
            op = services.do_upload_certificate(site, actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form_errors_from(form, exc)
        else:
            messages.success(request, "Certificate accepted; installing it.")
            return redirect_htmx_aware(request, op.get_absolute_url())
    return _page(request, site, upload_form=form, status=400)


def _url(site) -> str:
    from django.urls import reverse

    return reverse("site-tls", args=[site.uuid])


def site_section(site, user) -> dict:
    """The TLS card on a site's page (core/sections.py)."""
    cert = Certificate.objects.filter(website=site).first()
    return {"site": site, "cert": cert, "uncovered": services.uncovered_names(site, cert)}
