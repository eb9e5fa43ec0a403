"""What an app implements to plug into the apply engine: providers, services, profile keys.

A **provider** says which files a server should have (``files``) and hears how its units
fared (``report``). A **service** owns the files of one program on the server: it declares
its profile keys and reload order, validates staged files with the program's own check,
reloads it, and verifies the reload took effect. A **unit** is what succeeds or fails as a
whole (one website: its vhost and its pool); a unit that fails anywhere keeps all its
previous files everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from servers.engine.profile import Profile
    from servers.engine.run import ServiceRun
    from servers.models import Server


class ApplyError(Exception):
    """An apply step failed. ``retryable`` says whether running it again can help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Probe:
    """How to ask the live server whether a unit's new configuration serves.

    Each of ``hosts`` is requested with ``revision`` expected back (the vhost answers it on
    the probe path), so a name claimed by another site is caught; ``gateway_paths`` are
    fetched from the first host and fail the unit on 502/504 (its backend is not there).
    """

    hosts: tuple[str, ...]
    revision: str
    gateway_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManagedFile:
    path: str
    content: bytes
    service: str
    unit: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    probe: Probe | None = None
    sha256: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.content).hexdigest())


@dataclass(frozen=True)
class UnitFailed:
    """Yielded by a provider instead of a unit's files when it cannot render them (a rule set
    that would lock the panel out): the unit keeps what is live and is reported failed."""

    unit: str
    reason: str


@dataclass(frozen=True)
class ProfileKey:
    """One setting a service reads from a server's profile, with its Debian default.

    kind: ``path`` (absolute, may hold placeholders such as {php}), ``command`` (an argv
    list), ``url``, ``listen`` (port or address:port), ``glob`` (a file name pattern),
    ``seconds`` (a whole number) or ``text``.
    """

    name: str
    default: Any
    kind: str
    help: str = ""


class Provider(Protocol):
    """Contributes managed files. ``unit_prefix`` names the units it owns (``website:``)."""

    unit_prefix: str
    profile_keys: tuple[ProfileKey, ...]

    def files(
        self, server: Server, profile: Profile, units: set[str] | None
    ) -> Iterable[ManagedFile | UnitFailed]:
        """Every file of ``units`` (all units when None)."""
        ...

    def report(self, server: Server, ok: set[str], failed: dict[str, str]) -> None:
        """Units now live as desired (``ok``) and units that kept their previous files."""
        ...


class Service:
    """Base for a program the engine manages. Subclasses set the class attributes."""

    name: str = ""
    reload_order: int = 50
    profile_keys: tuple[ProfileKey, ...] = ()

    def validate(self, run: ServiceRun) -> dict[str, str]:
        """Failed units -> the tool's words. Raise ApplyError if the service as a whole
        cannot take the change (its live configuration is broken, a tool is missing)."""
        return {}

    def reload(self, run: ServiceRun) -> None:
        """Make the program load the swapped files; raise ApplyError unless it took effect."""

    def verify(self, run: ServiceRun) -> dict[str, str]:
        """After the reload: units whose new configuration does not serve -> why."""
        return {}

    def blame(self, run: ServiceRun, error: str) -> set[str]:
        """Units a failed reload's message points at (none: every changed unit is suspect)."""
        return set()


ServiceFactory = Callable[[str], Service]
