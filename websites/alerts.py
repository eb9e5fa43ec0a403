"""Alert sources for sites and their certificates (registered in the apps' ``ready()``;
see docs/monitoring.md): what a customer should hear about without opening the panel."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from core.policy import restrict


def site_failing_source(rule, now: datetime):
    """``site_failing``: the owner's sites that failed to apply, and app sites whose process
    the process manager reports crashed while they should run."""
    from monitoring.alerts import Finding
    from websites.models import Website

    failing = Q(status=Website.Status.FAILED) | Q(app_running=True, app_state="crashed")
    rows = restrict(Website, rule.owner).filter(failing).exclude(suspended=True)
    for site in rows.only("uuid", "domain", "status", "status_message", "app_state", "server_id"):
        if site.status == Website.Status.FAILED:
            why = site.status_message or "its last change failed"
        else:
            why = "its app has crashed"
        yield Finding(
            subject=f"website:{site.uuid.hex}",
            label=site.domain,
            message=f"{site.domain}: {why}"[:500],
            server_id=site.server_id,
        )


def certificate_failing_source(rule, now: datetime):
    """``certificate_failing``: certificates whose order or renewal failed (the ACME
    server's own words), whether or not an older one still serves."""
    from monitoring.alerts import Finding
    from websites.certificates.models import Certificate

    failing = Q(status=Certificate.Status.FAILED) | ~Q(last_error="")
    rows = restrict(Certificate, rule.owner).filter(failing).select_related("website")
    for cert in rows:
        yield Finding(
            subject=f"certificate:{cert.uuid.hex}",
            label=cert.website.domain,
            message=f"The certificate of {cert.website.domain} could not be issued: "
            f"{cert.last_error or 'the order failed'}"[:500],
            server_id=cert.website.server_id,
        )
