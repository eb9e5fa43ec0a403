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


@dataclass(frozen=True)
class Step:
    """A command a service runs on the server (a reload, a verification): one argv. Steps of
    several services run in one round trip; a non-zero exit stops the batch."""

    argv: list[str]
    timeout: float = 60
    stdin: bytes = b""  # bulk data (a list of sites ...): never in argv, which is limited


@dataclass(frozen=True)
class StepResult:
    code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class Service:
    """Base for a program the engine manages. Subclasses set the class attributes.

    The common path costs two round trips for every service together: one that stages the
    files and runs each service's ``validation_jobs``, one that swaps them in, runs each
    service's ``reload_step`` and ``verify_step`` in reload order and commits. Only when a
    step fails does the engine go service by service (``reload``/``verify``), rolling back
    what failed. A service whose reload cannot run in such a batch sets ``batchable`` False.
    """

    name: str = ""
    reload_order: int = 50
    batchable: bool = True
    # True when validate() decides only from the jobs' results, and a job exits non-zero
    # whenever validate() would report a failure: the server may then go on to swap in the
    # same round trip as the staging when every job passed.
    validated_by_jobs: bool = False
    profile_keys: tuple[ProfileKey, ...] = ()

    def validation_jobs(self, run: ServiceRun) -> list[Job]:
        """Commands to run right after staging; their results are in ``run.jobs``."""
        return []

    def validate(self, run: ServiceRun) -> dict[str, str]:
        """Failed units -> the tool's words. Raise ApplyError if the service as a whole
        cannot take the change (its live configuration is broken, a tool is missing)."""
        return {}

    def reload_step(self, run: ServiceRun) -> Step | None:
        """The command that makes the program load the swapped files and proves it did."""
        return None

    def reload_error(self, run: ServiceRun, result: StepResult) -> str:
        """Why the reload did not take effect ("" when it did)."""
        return "" if result.ok else result.output.strip() or f"exit code {result.code}"

    def verify_step(self, run: ServiceRun) -> Step | None:
        """After the reload: a command that exits 0 only if every changed unit serves."""
        return None

    def verify_errors(self, run: ServiceRun, result: StepResult) -> dict[str, str]:
        """Units whose new configuration does not serve -> why (from the verify step)."""
        if result.ok:
            return {}
        return {u: result.output.strip()[:2000] for u in run.units()}

    def reload(self, run: ServiceRun) -> None:
        """Reload on its own (the careful path): raise ApplyError unless it took effect."""
        step = self.reload_step(run)
        if step is None:
            return
        error = self.reload_error(run, run.step(step))
        if error:
            raise ApplyError(f"{self.name} did not load the new configuration: {error}")

    def verify(self, run: ServiceRun) -> dict[str, str]:
        step = self.verify_step(run)
        return {} if step is None else self.verify_errors(run, run.step(step))

    def blame(self, run: ServiceRun, error: str) -> set[str]:
        """Units a failed reload's message points at (none: every changed unit is suspect)."""
        return set()


@dataclass(frozen=True)
class Job:
    """A validation command run right after staging. ``tree`` jobs run ``argv`` against the
    symlink tree of an include directory (see includedir.py); others run ``argv`` as is."""

    name: str
    argv: list[str]
    tree: tuple[str, str, str, str] | None = None  # main conf, include dir, pattern, staged conf
    stdin: bytes = b""


ServiceFactory = Callable[[str], Service]
