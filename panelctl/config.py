"""Profiles: a panel URL and an API token each, in an INI file only its owner may read.

The file is ``$PANELCTL_CONFIG`` or ``$XDG_CONFIG_HOME/panelctl/config.ini`` (by default
``~/.config/panelctl/config.ini``). It is written with mode 0600 (its directory 0700) and
refused when group or others may read it, as ssh refuses such a key: the token is as good
as the password for what its scope allows.
"""

from __future__ import annotations

import configparser
import contextlib
import ipaddress
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


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
    """Write the whole file anew and rename it into place: an interrupted write (a full
    disk, a kill) leaves the old file whole, never a truncated one without the profiles."""
    file = path()
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp creates the file 0600 before anything is written into it: the token is never
    # readable by others, not even for a moment.
    fd, temp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            parser.write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, file)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def is_loopback(host: str) -> bool:
    """A loopback host, decided from the name alone: an address in 127.0.0.0/8 or ``::1``,
    or the name ``localhost``, which RFC 6761 reserves for loopback (as browsers treat it).
    Never resolved: the answer would bind nothing (the connection resolves again later, and
    ``/etc/hosts`` or DNS could say otherwise by then), and any other name may point anywhere."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why the token may not be sent to ``url``, or None: https:// only, or http:// to a
    loopback host (anything else would carry the token across the network in the clear)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "give an https:// URL"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return "https:// only (http:// for loopback hosts)"
    return None


def load(name: str) -> Profile:
    """The profile ``name``; ``PANELCTL_URL`` and ``PANELCTL_TOKEN`` override its values.
    A URL the token may not go to (``url_problem``: from the environment or a hand-edited
    file) is refused here, before any request."""
    parser = _read()
    section = parser[name] if parser.has_section(name) else {}
    url = os.environ.get("PANELCTL_URL") or section.get("url", "")
    token = os.environ.get("PANELCTL_TOKEN") or section.get("token", "")
    if not url or not token:
        raise ConfigError(f"No profile {name!r}: run `panelctl login --profile {name}` first.")
    problem = url_problem(url)
    if problem:
        where = "PANELCTL_URL" if os.environ.get("PANELCTL_URL") else f"profile {name!r}"
        raise ConfigError(f"{where}: {url!r} refused: {problem}.")
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
