"""Render a website's nginx vhost. Every value in it was validated by a strict pattern."""

from __future__ import annotations

from websites.models import Website


def render_vhost(site: Website, listen: str, webroot_base: str) -> str:
    names = " ".join([site.domain, *site.aliases.split()])
    custom = "\n".join(
        f"    {line}" for line in site.custom_directives.splitlines() if line.strip()
    )
    return (
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
