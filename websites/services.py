"""State changes of websites. Each writes the row and its audit entry in one transaction and
starts the apply that brings the site's vhost to its server.

The field lists here are the only place that says what a caller may write: the admin and the
API take theirs from them. Raw nginx directives and the "administrator's proxy" flag are for
administrators alone; a site's owner changes its typed options.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from core import audit
from core.policy import ADMIN, role_of
from core.services import accept_only, refuse_nul_in
from servers.services import start_apply
from websites.checks import own_addresses
from websites.models import Website
from websites.options import parse_options

OWNER_FIELDS = ["options"]
ADMIN_FIELDS = ["custom_directives", "admin_proxy"]
WEBSITE_FIELDS = [*OWNER_FIELDS, *ADMIN_FIELDS]
ADMIN_ONLY = {
    "custom_directives": "Only administrators may set raw nginx directives; use the options.",
    "admin_proxy": "Only administrators may mark a site as their proxy.",
}


def may_write_raw_directives(user) -> bool:
    """The one rule for raw directives: administrators (forms and serializers ask this)."""
    return user is None or role_of(user) == ADMIN


def writable_fields(user) -> list[str]:
    return WEBSITE_FIELDS if may_write_raw_directives(user) else OWNER_FIELDS


def do_update_website(site: Website, *, actor, data: dict) -> Website:
    """Change a site's options (its owner) or raw directives (administrators), then apply
    the site's unit on its server."""
    accept_only(data, WEBSITE_FIELDS)
    # From the database: a bound ModelForm has already written new values onto ``site``.
    stored = Website.objects.select_related("server").get(pk=site.pk)
    if not may_write_raw_directives(actor):
        refused = {
            name: why
            for name, why in ADMIN_ONLY.items()
            if name in data and data[name] != getattr(stored, name)
        }
        if refused:
            raise ValidationError(refused)
    data = dict(data)
    if isinstance(data.get("custom_directives"), str):
        data["custom_directives"] = data["custom_directives"].replace("\r\n", "\n")
    before = audit.snapshot(stored, WEBSITE_FIELDS)
    site = stored
    for name, value in data.items():
        setattr(site, name, value)
    refuse_nul_in(site, WEBSITE_FIELDS)
    site.full_clean()
    # Stored in one spelling: only the options that differ from their defaults.
    site.options = parse_options(
        site.options, names=tuple(site.names), own_addresses=own_addresses(site.server)
    ).to_json()
    after = audit.snapshot(site, WEBSITE_FIELDS)
    changes = audit.diff(before, after)
    if not changes:
        return site
    site.status = Website.Status.PENDING  # until the apply reports on it
    with transaction.atomic():
        site.save(update_fields=[*WEBSITE_FIELDS, "status"])
        audit.record("website.update", site, actor=actor, changes=changes)
        start_apply(site.server, actor=actor, units={site.unit})
    return site
