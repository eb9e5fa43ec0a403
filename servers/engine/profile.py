"""A server's profile: the paths and commands the services use there.

Every key is declared by the service or provider that reads it (``ProfileKey``) with its
Debian/Ubuntu default; a server's ``profile`` field holds overrides, validated by kind.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

from servers.engine import registry
from servers.engine.contracts import ProfileKey

ENGINE_KEYS = (
    ProfileKey(
        "state_dir",
        "/var/lib/hosting-panel",
        "path",
        "Where the panel keeps its lock, manifest and run records on the server.",
    ),
)
PATH = re.compile(r"/[A-Za-z0-9._/{}-]*")
GLOB = re.compile(r"[A-Za-z0-9._*?-]{1,64}")
LISTEN = re.compile(r"((\d{1,3}\.){3}\d{1,3}:|\[[0-9a-fA-F:]+\]:)?\d{1,5}")
URL = re.compile(r"https?://[A-Za-z0-9.:\[\]/_-]+")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def keys() -> dict[str, ProfileKey]:
    found = {k.name: k for k in ENGINE_KEYS}
    for source in [*registry.service_classes(), *registry.providers()]:
        for key in getattr(source, "profile_keys", ()):
            found[key.name] = key
    return found


class Profile:
    """Read-only view: ``profile.nginx_conf`` is the override or the default."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no profile setting {name!r}") from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def staging_dir(self) -> str:
        return f"{self.state_dir}/runs"


def profile_for(server) -> Profile:
    declared = keys()
    values = {name: key.default for name, key in declared.items()}
    values.update({k: v for k, v in (server.profile or {}).items() if k in declared})
    return Profile(values)


def validate_overrides(overrides: Any) -> None:
    """Refuse unknown keys and values of the wrong kind, with the key in the message."""
    if not isinstance(overrides, dict):
        raise ValidationError("The profile must be an object of settings.")
    declared = keys()
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ValidationError(f"Unknown profile settings: {', '.join(unknown)}.")
    errors = {}
    for name, value in overrides.items():
        problem = _check(declared[name], value)
        if problem:
            errors[name] = problem
    if errors:
        raise ValidationError([f"{name}: {text}" for name, text in sorted(errors.items())])


def _check(key: ProfileKey, value: Any) -> str:
    if key.kind == "command":
        if not (isinstance(value, list) and value and all(isinstance(a, str) for a in value)):
            return "must be a command as a list of strings"
        if any(not a or _control(a) for a in value):
            return "arguments must be non-empty and free of control characters"
        for arg in value:
            for name in PLACEHOLDER.findall(arg):
                if name not in ("conf", "php", "file", "pid"):
                    return f"unknown placeholder {{{name}}}"
        return ""
    if key.kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
            return "must be a whole number of seconds between 1 and 3600"
        return ""
    if not isinstance(value, str):
        return "must be a string"
    if "\x00" in value:
        return "NUL characters are not allowed"
    if key.kind == "path" and not PATH.fullmatch(value):
        return f"{value!r} is not a plain absolute path"
    pattern = {"glob": GLOB, "listen": LISTEN, "url": URL}.get(key.kind)
    if pattern is not None and not pattern.fullmatch(value):
        return f"{value!r} is not a valid {key.kind}"
    if key.kind == "path" and ("/../" in f"{value}/" or "//" in value or "/./" in f"{value}/"):
        return f"{value!r} is not a plain absolute path"
    if key.kind == "path" and re.search(r"\{(?!php\})", value):
        return "the only placeholder a path may hold is {php}"
    if key.kind == "listen" and not 1 <= int(value.rsplit(":", 1)[-1]) <= 65535:
        return "the port must be between 1 and 65535"
    if key.kind == "text" and _control(value):
        return "control characters are not allowed"
    return ""


def _control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def fill(argv: list[str], **values: str) -> list[str]:
    """Put values into ``{name}`` placeholders of a command, one argv element at a time."""
    out = []
    for arg in argv:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return out
