"""What websites contribute to a server's managed files: one vhost per site."""

from __future__ import annotations

from servers.engine import ManagedFile, Probe, ProfileKey
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
            "uuid", "domain", "aliases", "custom_directives"
        )
        if units is not None:
            sites = sites.filter(uuid__in=[u.removeprefix(self.unit_prefix) for u in units])
        sites_dir = profile.nginx_sites_dir.rstrip("/")
        for site in sites.order_by("domain"):
            text, revision = render_vhost(site, profile.nginx_listen, profile.webroot_base)
            yield ManagedFile(
                path=f"{sites_dir}/{site.domain}.conf",
                content=text.encode(),
                service="nginx",
                unit=site.unit,
                probe=Probe(hosts=(site.domain, *site.aliases.split()), revision=revision),
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
