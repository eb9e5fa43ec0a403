"""Render a website's nginx vhost from checked values: its names, its typed options
(websites/options.py) and, for administrators' sites, raw directives re-written from their
parse (websites/directives.py). No text a customer typed is pasted into the file.

Every server block of the file ends with the panel's probe location (websites/nginx.py), so
each of the site's names answers the probe, including names that only redirect.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import SimpleNamespace

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
from websites.tls import CHALLENGE_PATH, with_tls

STATIC_FILES = r"\.(?:css|js|mjs|map|png|jpe?g|gif|svg|webp|avif|ico|woff2?|ttf|otf|eot)$"
GZIP_TYPES = (
    "text/css text/plain text/xml application/javascript application/json application/xml "
    "image/svg+xml"
)
AUTH_REALM = "Protected area"
HEADER = "# Managed by the hosting panel: changes here are reported as drift and undone.\n"
SUSPENDED_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>Site suspended</title></head>"
    "<body><h1>This site is suspended</h1><p>Its owner has been told why. Please come back "
    "later.</p></body></html>"
)
FASTCGI_PARAMS = (
    ("SCRIPT_FILENAME", "$document_root$fastcgi_script_name"),
    ("SCRIPT_NAME", "$fastcgi_script_name"),
    ("DOCUMENT_ROOT", "$document_root"),
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("REQUEST_URI", "$request_uri"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("HTTPS", "$https if_not_empty"),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
    ("HTTP_PROXY", '""'),
)


def site_options(site: Website, own_addresses: frozenset[str] = frozenset()) -> SiteOptions:
    return parse_options(site.options, names=tuple(site.names), own_addresses=own_addresses)


def rendered_locations(options: SiteOptions) -> frozenset[tuple[str, str]]:
    """The locations the template and the options put in the main server block (raw
    directives may not repeat them)."""
    taken = {("=", PROBE_PATH), ("prefix", "/"), ("prefix", CHALLENGE_PATH)}
    taken.update(("prefix", p.path) for p in options.proxies)
    taken.update(("prefix", a.path) for a in options.auth_paths)
    if options.static_cache_days:
        taken.add(("~*", STATIC_FILES))
    return frozenset(taken)


@dataclass(frozen=True)
class SiteEnv:
    """Where a site lives on its server: its web root, logs, PHP socket, resolver."""

    root: str
    log_dir: str = ""
    php_socket: str = ""
    resolver: str = ""
    app_port: int = 0
    auth_dir: str = ""  # where the password files of protected paths are (not the web root)


def auth_file_name(domain: str, path: str) -> str:
    """The password file of one protected path (a digest: paths hold '/')."""
    return f"{domain}.{hashlib.sha256(path.encode()).hexdigest()[:16]}.htpasswd"


def render_htpasswd(users) -> str:
    """name:bcrypt-hash lines; both were checked whole (no ':' or newline in either)."""
    return "".join(f"{u.name}:{u.hash}\n" for u in users)


def render_vhost(
    site: Website,
    listen: str,
    webroot_base: str,
    own_addresses: frozenset[str] = frozenset(),
    env: SiteEnv | None = None,
) -> tuple[str, str]:
    """The vhost text and its revision (what the probe location answers). Raises
    ValidationError when stored values do not pass their checks (written around the
    services): the unit then fails and keeps its live file."""
    env = env or SiteEnv(root=f"{webroot_base}/{site.domain}/public")
    if site.suspended:  # over HTTPS too, or its names would reach another site's TLS block
        plain = SimpleNamespace(https_redirect=False, hsts_max_age=0)
        return with_probe(
            HEADER + with_tls(site, _suspended_block(site, listen), listen, plain), listen
        )
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
    body = HEADER + _main_block(site, options, served, listen, env, raw)
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


def _main_block(site, options: SiteOptions, served, listen, env: SiteEnv, raw) -> str:
    lines = [
        f"listen {listen};",
        f"server_name {' '.join(served)};",
        f"root {env.root};",
        "index index.php index.html;" if site.kind == Website.Kind.PHP else "index index.html;",
    ]
    if env.log_dir:
        lines += [
            f"access_log {env.log_dir}/{site.domain}.access.log;",
            f"error_log {env.log_dir}/{site.domain}.error.log;",
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
    if site.kind == Website.Kind.PROXY:
        if root is not None:
            raise ValidationError("A reverse proxy site passes / to its upstream already.")
        if not env.resolver:
            raise ValidationError("The server has no resolver for upstreams set.")
        lines += [f"resolver {env.resolver} valid=60s;", "resolver_timeout 3s;"]
    elif site.kind in (Website.Kind.NODE, Website.Kind.PYTHON):
        if root is not None:
            raise ValidationError("An app site passes / to its app already.")
        if not env.app_port:
            raise ValidationError("The app has no port.")
    if site.kind == Website.Kind.PHP and not env.php_socket:
        raise ValidationError("PHP sites need a PHP version.")
    if options.auth_paths and not env.auth_dir:  # never serve a protected path without it
        raise ValidationError("Protected paths need the site's system account: not ready.")
    lines += _location("/", _root_content(site, options, env, root))
    if site.kind == Website.Kind.PHP:
        lines += _location(r"~ \.php$", _php(env.php_socket))
    if options.static_cache_days:
        lines += _static_cache(options)
    auth = {a.path: a for a in options.auth_paths}
    for path, proxy in sorted(proxies.items()):
        guard = _auth_over(path, auth)
        lines += _location(f"^~ {path}", [*_auth_lines(site, guard, env), *_proxy(proxy)])
    for path, guard in sorted(auth.items()):
        if path in proxies:  # that location has its auth lines already
            continue
        # ^~: no regex location (PHP, static files) may answer below the path without auth;
        # the content is what would answer there otherwise, nested.
        under = [p for p in proxies if path.startswith(p)]
        content = (
            _proxy(proxies[max(under, key=len)])
            if under
            else _root_content(site, options, env, root, nested=True)
        )
        lines += _location(f"^~ {path}", [*_auth_lines(site, guard, env), *content])
    text = "".join(f"    {line}\n" for line in lines)
    return f"server {{\n{text}{render_directives(raw)}}}\n"


def _root_content(site, options: SiteOptions, env: SiteEnv, root, nested: bool = False):
    """What answers at / (and, ``nested``, below a protected path, with the regex locations
    of PHP and static files inside, since ^~ keeps the server's own from matching)."""
    if site.kind == Website.Kind.PROXY:
        return _variable_proxy(site.upstream)
    if site.kind in (Website.Kind.NODE, Website.Kind.PYTHON):
        return _app_proxy(env.app_port)
    if root is not None:
        return _proxy(root)
    lines = ["try_files $uri $uri/ =404;"]
    if nested and site.kind == Website.Kind.PHP:
        lines += _location(r"~ \.php$", _php(env.php_socket))
    if nested and options.static_cache_days:
        lines += _static_cache(options)
    return lines


def _static_cache(options: SiteOptions) -> list[str]:
    return [
        f'location ~* "{STATIC_FILES}" {{',
        f"    expires {options.static_cache_days}d;",
        "    try_files $uri =404;",
        "}",
    ]


def _auth_over(path: str, auth: dict) -> object | None:
    """The protected path a location at ``path`` falls under (nginx matches prefixes as
    strings: the longest wins), or None."""
    over = [a for a in auth if path.startswith(a)]
    return auth[max(over, key=len)] if over else None


def _auth_lines(site, guard, env: SiteEnv) -> list[str]:
    if guard is None:
        return []
    return [
        f'auth_basic "{AUTH_REALM}";',
        f"auth_basic_user_file {env.auth_dir}/{auth_file_name(site.domain, guard.path)};",
    ]


def _suspended_block(site, listen: str) -> str:
    """Every name answers 503 with the suspension page (nothing of the site is served)."""
    page = SUSPENDED_PAGE.replace('"', "&quot;")
    return (
        "server {\n"
        f"    listen {listen};\n"
        f"    server_name {' '.join(site.names)};\n"
        "    location / {\n"
        "        default_type text/html;\n"
        '        add_header Retry-After "3600" always;\n'
        f'        return 503 "{page}";\n'
        "    }\n"
        "}\n"
    )


def _php(socket: str) -> list[str]:
    return [
        "try_files $uri =404;",
        f"fastcgi_pass unix:{socket};",
        "fastcgi_index index.php;",
        *(f"fastcgi_param {name} {value};" for name, value in FASTCGI_PARAMS),
    ]


def _variable_proxy(upstream: str) -> list[str]:
    """Through a variable, so nginx resolves a host name when a request comes (with the
    resolver) instead of at start: an unresolvable upstream fails this site only (502)."""
    return [
        f'set $panel_upstream "{upstream.rstrip("/")}";',
        "proxy_pass $panel_upstream;",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $host;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $http_connection;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Real-IP $remote_addr;",
    ]


def _app_proxy(port: int) -> list[str]:
    """The site's own app on the server: a literal address, so nginx never resolves anything
    and an app that is down answers 502 for this site alone. Websockets pass through."""
    return [
        f"proxy_pass http://127.0.0.1:{int(port)};",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $host;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $http_connection;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_read_timeout 300s;",
    ]


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
