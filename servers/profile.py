"""Paths and commands the panel uses on a server: Debian/Ubuntu defaults, per-server overrides.

Commands are argv lists. ``{php}`` in a php-fpm entry stands for a version such as 8.2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from django.core.exceptions import ValidationError

from servers.validators import validate_abs_path

DEFAULTS: dict[str, object] = {
    # Where the panel keeps its manifest, staging and backups on the server.
    "state_dir": "/var/lib/hosting-panel",
    "nginx_conf": "/etc/nginx/nginx.conf",
    # Managed vhosts; nginx.conf must include this directory's *.conf.
    "nginx_sites_dir": "/etc/nginx/panel.d",
    "nginx_listen": "80",
    "nginx_test": ["nginx", "-t", "-q", "-c", "{conf}"],
    "nginx_reload": ["nginx", "-s", "reload"],
    "nginx_verify_url": "http://127.0.0.1/",
    "webroot_base": "/srv/www",
    "php_conf": "/etc/php/{php}/fpm/php-fpm.conf",
    "php_pool_dir": "/etc/php/{php}/fpm/pool.d",
    "php_test": ["php-fpm{php}", "-t", "-y", "{conf}"],
    "php_reload": ["systemctl", "reload", "php{php}-fpm"],
    "nft_file": "/etc/nftables.d/hosting-panel.nft",
    "nft_test": ["nft", "-c", "-f", "{file}"],
    "nft_apply": ["nft", "-f", "{file}"],
    "process_manager": "systemd",
}
PATH_KEYS = {"state_dir", "nginx_conf", "nginx_sites_dir", "webroot_base", "nft_file"}
COMMAND_KEYS = {k for k, v in DEFAULTS.items() if isinstance(v, list)}


@dataclass(frozen=True)
class Profile:
    state_dir: str
    nginx_conf: str
    nginx_sites_dir: str
    nginx_listen: str
    nginx_test: list
    nginx_reload: list
    nginx_verify_url: str
    webroot_base: str
    php_conf: str
    php_pool_dir: str
    php_test: list
    php_reload: list
    nft_file: str
    nft_test: list
    nft_apply: list
    process_manager: str

    @property
    def staging_dir(self) -> str:
        return f"{self.state_dir}/staging"

    @property
    def manifest_path(self) -> str:
        return f"{self.state_dir}/manifest.json"


def validate_overrides(overrides: dict) -> None:
    if not isinstance(overrides, dict):
        raise ValidationError("The profile must be an object of settings.")
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValidationError(f"Unknown profile settings: {', '.join(sorted(unknown))}.")
    for key, value in overrides.items():
        if key in COMMAND_KEYS:
            if not (isinstance(value, list) and value and all(isinstance(a, str) for a in value)):
                raise ValidationError(f"{key} must be a command as a list of strings.")
        elif key in PATH_KEYS:
            validate_abs_path(value)
        elif key in ("php_conf", "php_pool_dir"):
            validate_abs_path(value.replace("{php}", "8.2"))
        elif key == "nginx_verify_url" and not re.fullmatch(
            r"https?://[A-Za-z0-9.:\[\]/_-]+", value
        ):
            raise ValidationError("nginx_verify_url must be a plain http:// or https:// URL.")
        elif key == "nginx_listen" and not re.fullmatch(r"(\d{1,3}(\.\d{1,3}){3}:)?\d{1,5}", value):
            raise ValidationError("nginx_listen is a port or address:port, e.g. 80 or 10.0.0.5:80.")
        elif key == "process_manager" and value not in ("systemd", "supervisord"):
            raise ValidationError("process_manager is systemd or supervisord.")
        elif not isinstance(value, str):
            raise ValidationError(f"{key} must be a string.")


def fill(argv: list[str], **values: str) -> list[str]:
    """Put values into ``{name}`` placeholders of a command, one argv element at a time."""
    out = []
    for arg in argv:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return out


def profile_for(server) -> Profile:
    detected = {}
    services = (server.facts or {}).get("services") or {}
    if services and not services.get("systemd"):
        detected["process_manager"] = "supervisord"  # no systemd on this server
    merged = {**DEFAULTS, **detected, **(server.profile or {})}
    return Profile(**{f.name: merged[f.name] for f in fields(Profile)})
