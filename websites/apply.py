"""What websites contribute to a server's managed files."""

from __future__ import annotations

from servers.apply import ManagedFile
from websites.models import Website
from websites.nginx import render_vhost


class WebsiteFiles:
    def files(self, server, profile):
        sites = Website.objects.filter(server=server).order_by("domain")
        for site in sites:
            yield ManagedFile(
                path=f"{profile.nginx_sites_dir.rstrip('/')}/{site.domain}.conf",
                content=render_vhost(site, profile.nginx_listen, profile.webroot_base).encode(),
                service="nginx",
                unit=site.unit,
            )

    def report(self, server, ok_units: set[str], failed_units: dict[str, str]) -> None:
        for site in Website.objects.filter(server=server):
            if site.unit in failed_units:
                site.status, site.status_message = Website.Status.FAILED, failed_units[site.unit]
            elif site.unit in ok_units:
                site.status, site.status_message = Website.Status.ACTIVE, ""
            else:
                continue
            site.save(update_fields=["status", "status_message"])
