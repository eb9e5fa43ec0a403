"""The checks of a website that need the whole site: its options against its names and its
server's address, its raw directives against its directory, log directory, options and
whether it is an administrator's proxy. ``Website.clean`` runs them."""

from __future__ import annotations

import posixpath

from django.core.exceptions import ValidationError

from servers.engine import profile_for
from servers.validators import parse_ip
from websites.directives import SiteContext, check_directives
from websites.options import SiteOptions, parse_options
from websites.vhost import rendered_locations


def own_addresses(server) -> frozenset[str]:
    """The server's own address: a site's upstream must not loop back to it."""
    addr = parse_ip(server.address) if server is not None else None
    return frozenset({str(addr)}) if addr is not None else frozenset()


def site_dir_of(site, profile) -> str:
    """The site's directory on its server (below its owner's home)."""
    base = profile.webroot_base.rstrip("/")
    owner = getattr(site, "owner", None) if site.owner_id else None
    if owner is None:
        return f"{base}/{site.domain}"
    return f"{base}/{owner.account_name}/sites/{site.domain}"


def site_context(site, options: SiteOptions) -> SiteContext:
    profile = profile_for(site.server)
    return SiteContext(
        domain=site.domain,
        site_dir=site_dir_of(site, profile),
        log_dir=posixpath.dirname(profile.nginx_error_log.rstrip("/")),
        hostname_upstreams=site.admin_proxy,
        own_addresses=own_addresses(site.server),
        taken_locations=rendered_locations(options),
    )


def check_site(site) -> None:
    """A ValidationError per field. Values the fields' own validators refuse are left to
    them (reported once)."""
    errors: dict[str, list[str]] = {}
    try:
        parse_options(site.options)
    except ValidationError:
        return  # the field's validator says why; the rest depends on the options
    try:
        options = parse_options(
            site.options, names=tuple(site.names), own_addresses=own_addresses(site.server)
        )
    except ValidationError as exc:
        errors["options"] = exc.messages
        options = SiteOptions()
    if site.custom_directives.strip() and site.server_id is not None:
        try:
            check_directives(site.custom_directives, None)
        except ValidationError:
            pass  # the field's validator says why
        else:
            try:
                check_directives(site.custom_directives, site_context(site, options))
            except ValidationError as exc:
                errors["custom_directives"] = exc.messages
    _check_names(site, errors)
    if errors:
        raise ValidationError(errors)


def _check_names(site, errors: dict[str, list[str]]) -> None:
    """Every name belongs to one site: nginx would serve only one of two claimants."""
    from websites.names import name_conflicts

    names = site.names
    if len(set(names)) != len(names):
        errors.setdefault("aliases", []).append("A name is given twice.")
    taken = name_conflicts(names, exclude_pk=site.pk)
    for name in taken:
        field = "domain" if name == site.domain else "aliases"
        errors.setdefault(field, []).append(
            f"{name} is already a name of another website; a name can belong to one site only."
        )
