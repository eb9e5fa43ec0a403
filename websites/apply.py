"""What websites contribute to a server's managed files: one vhost per site."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from servers.engine import ManagedFile, Probe, ProfileKey, UnitFailed
from websites.checks import own_addresses
from websites.models import Website
from websites.vhost import render_vhost

CHUNK = 500


class WebsiteFiles:
    unit_prefix = "website:"
    profile_keys = (
        ProfileKey("webroot_base", "/srv/www", "path", "Document roots live below this."),
    )

    def files(self, server, profile, units):
        sites = Website.objects.filter(server=server).only(
            "uuid", "domain", "aliases", "options", "custom_directives"
        )
        if units is not None:
            sites = sites.filter(uuid__in=[u.removeprefix(self.unit_prefix) for u in units])
        sites_dir = profile.nginx_sites_dir.rstrip("/")
        own = own_addresses(server)
        for site in sites.order_by("domain"):
            try:
                text, revision = render_vhost(site, profile.nginx_listen, profile.webroot_base, own)
            except ValidationError as exc:  # stored around the services: keep what is live
                yield UnitFailed(site.unit, "Not rendered: " + " ".join(exc.messages))
                continue
            yield ManagedFile(
                path=f"{sites_dir}/{site.domain}.conf",
                content=text.encode(),
                service="nginx",
                unit=site.unit,
                probe=Probe(hosts=tuple(site.names), revision=revision),
            )

    def report(self, server, ok: set[str], failed: dict[str, str]) -> None:
        """Statuses change in bulk and only where they differ."""
        ids = sorted(u.removeprefix(self.unit_prefix) for u in ok)
        for i in range(0, len(ids), CHUNK):
            Website.objects.filter(server=server, uuid__in=ids[i : i + CHUNK]).exclude(
                status=Website.Status.ACTIVE, status_message=""
            ).update(status=Website.Status.ACTIVE, status_message="")
        for unit, message in sorted(failed.items()):
            Website.objects.filter(server=server, uuid=unit.removeprefix(self.unit_prefix)).update(
                status=Website.Status.FAILED, status_message=message[:4000]
            )
