"""Profiles: a panel URL and an API token each, in an INI file only its owner may read.

The file is ``$PANELCTL_CONFIG`` or ``$XDG_CONFIG_HOME/panelctl/config.ini`` (by default
``~/.config/panelctl/config.ini``). It is written with mode 0600 (its directory 0700) and
refused when group or others may read it, as ssh refuses such a key: the token is as good
as the password for what its scope allows.
"""

from __future__ import annotations

import configparser
import os
import stat
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    token: str


def path() -> Path:
    explicit = os.environ.get("PANELCTL_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "panelctl" / "config.ini"


def _read() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    file = path()
    if file.exists():
        mode = file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{file} may be read by others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {file}"
            )
        parser.read(file, encoding="utf-8")
    return parser


def _write(parser: configparser.ConfigParser) -> None:
    file = path()
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 before anything is written into it: the token is never readable by others.
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        parser.write(out)


def load(name: str) -> Profile:
    """The profile ``name``; ``PANELCTL_URL`` and ``PANELCTL_TOKEN`` override its values."""
    parser = _read()
    section = parser[name] if parser.has_section(name) else {}
    url = os.environ.get("PANELCTL_URL") or section.get("url", "")
    token = os.environ.get("PANELCTL_TOKEN") or section.get("token", "")
    if not url or not token:
        raise ConfigError(f"No profile {name!r}: run `panelctl login --profile {name}` first.")
    return Profile(name, url.rstrip("/"), token)


def save(profile: Profile) -> None:
    parser = _read()
    if not parser.has_section(profile.name):
        parser.add_section(profile.name)
    parser[profile.name]["url"] = profile.url.rstrip("/")
    parser[profile.name]["token"] = profile.token
    _write(parser)


def remove(name: str) -> bool:
    parser = _read()
    found = parser.remove_section(name)
    if found:
        _write(parser)
    return found


def names() -> list[tuple[str, str]]:
    """(profile, URL) for every profile; never the tokens."""
    parser = _read()
    return [(name, parser[name].get("url", "")) for name in parser.sections()]
