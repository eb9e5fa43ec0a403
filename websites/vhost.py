"""Render a website's nginx vhost. Every value in it was validated by a strict pattern."""

from __future__ import annotations

from websites.models import Website
from websites.nginx import with_probe


def render_vhost(site: Website, listen: str, webroot_base: str) -> tuple[str, str]:
    """The vhost text and its revision (what the probe location answers)."""
    names = " ".join([site.domain, *site.aliases.split()])
    custom = "\n".join(
        f"    {line}" for line in site.custom_directives.splitlines() if line.strip()
    )
    body = (
        f"# Managed by the hosting panel: changes here are reported as drift and undone.\n"
        f"server {{\n"
        f"    listen {listen};\n"
        f"    server_name {names};\n"
        f"    root {webroot_base}/{site.domain}/public;\n"
        f"    index index.html index.php;\n"
        f"    location / {{\n"
        f"        try_files $uri $uri/ =404;\n"
        f"    }}\n"
        f"{custom + chr(10) if custom else ''}"
        f"}}\n"
    )
    return with_probe(body, listen)
