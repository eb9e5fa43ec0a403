"""Render a website's nginx vhost from checked values: its names, its typed options
(websites/options.py) and, for administrators' sites, raw directives re-written from their
parse (websites/directives.py). No text a customer typed is pasted into the file.

Every server block of the file ends with the panel's probe location (websites/nginx.py), so
each of the site's names answers the probe, including names that only redirect.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from websites.directives import (
    contained_statements,
    location_key,
    location_of,
    render_directives,
)
from websites.models import Website
from websites.nginx import PROBE_PATH, with_probe
from websites.options import SiteOptions, parse_options, www_pairs
from websites.tls import with_tls

STATIC_FILES = r"\.(?:css|js|mjs|map|png|jpe?g|gif|svg|webp|avif|ico|woff2?|ttf|otf|eot)$"
GZIP_TYPES = (
    "text/css text/plain text/xml application/javascript application/json application/xml "
    "image/svg+xml"
)
HEADER = "# Managed by the hosting panel: changes here are reported as drift and undone.\n"


def site_options(site: Website, own_addresses: frozenset[str] = frozenset()) -> SiteOptions:
    return parse_options(site.options, names=tuple(site.names), own_addresses=own_addresses)


def rendered_locations(options: SiteOptions) -> frozenset[tuple[str, str]]:
    """The locations the template and the options put in the main server block (raw
    directives may not repeat them)."""
    taken = {("=", PROBE_PATH), ("prefix", "/")}
    taken.update(("prefix", p.path) for p in options.proxies)
    if options.static_cache_days:
        taken.add(("~*", STATIC_FILES))
    return frozenset(taken)


def render_vhost(
    site: Website, listen: str, webroot_base: str, own_addresses: frozenset[str] = frozenset()
) -> tuple[str, str]:
    """The vhost text and its revision (what the probe location answers). Raises
    ValidationError when stored values do not pass their checks (written around the
    services): the unit then fails and keeps its live file."""
    options = site_options(site, own_addresses)
    raw = contained_statements(site.custom_directives) if site.custom_directives.strip() else []
    taken = rendered_locations(options)
    for stmt in raw:  # structure only: the allow-list is checked when the text is saved
        loc = location_of(stmt["args"]) if stmt["directive"] == "location" else None
        if loc is not None and location_key(loc) in taken:
            raise ValidationError(f"Raw directives repeat the location {loc.uri}.")
    redirects = www_pairs(tuple(site.names), options.www_redirect)
    moved = {name for name, _target in redirects}
    served = [n for n in site.names if n not in moved]
    body = HEADER + _main_block(site, options, served, listen, webroot_base, raw)
    for name, target in redirects:
        body += (
            f"server {{\n"
            f"    listen {listen};\n"
            f"    server_name {name};\n"
            f"    location / {{\n"
            f"        return 301 $scheme://{target}$request_uri;\n"
            f"    }}\n"
            f"}}\n"
        )
    return with_probe(with_tls(site, body, listen, options), listen)


def _main_block(site, options: SiteOptions, served, listen, webroot_base, raw) -> str:
    lines = [
        f"listen {listen};",
        f"server_name {' '.join(served)};",
        f"root {webroot_base}/{site.domain}/public;",
        "index index.html index.php;",
    ]
    if options.max_body_mb:
        lines.append(f"client_max_body_size {options.max_body_mb}m;")
    if options.gzip:
        lines += [
            "gzip on;",
            "gzip_vary on;",
            "gzip_proxied any;",
            "gzip_min_length 1024;",
            f"gzip_types {GZIP_TYPES};",
        ]
    lines += [f'add_header {h.name} "{h.value}" always;' for h in options.headers]
    lines += [f"error_page {p.code} {p.path};" for p in options.error_pages]
    proxies = {p.path: p for p in options.proxies}
    root = proxies.pop("/", None)
    lines += _location("/", [*_proxy(root)] if root else ["try_files $uri $uri/ =404;"])
    if options.static_cache_days:
        lines += [
            f'location ~* "{STATIC_FILES}" {{',
            f"    expires {options.static_cache_days}d;",
            "    try_files $uri =404;",
            "}",
        ]
    for path, proxy in sorted(proxies.items()):
        lines += _location(f"^~ {path}", _proxy(proxy))
    text = "".join(f"    {line}\n" for line in lines)
    return f"server {{\n{text}{render_directives(raw)}}}\n"


def _location(match: str, inner: list[str]) -> list[str]:
    return [f"location {match} {{", *(f"    {line}" for line in inner), "}"]


def _proxy(proxy) -> list[str]:
    return [
        f"proxy_pass {proxy.upstream};",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
    ]
