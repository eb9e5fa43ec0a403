"""What a service sees of one apply run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from servers.engine.contracts import ManagedFile, Step, StepResult
from servers.engine.profile import Profile
from servers.engine.remote import RemoteRun
from servers.transport import Transport


@dataclass
class ServiceRun:
    name: str
    profile: Profile
    run_id: str
    # Files of this service written in this run and paths of it removed (held ones excluded).
    files: dict[str, ManagedFile]
    removed: dict[str, str]  # path -> unit
    held: set[str]  # paths of failed units, across every service: they keep what is live
    transport: Callable[[], Transport]
    remote: Callable[[], RemoteRun]
    fresh: Callable[[], Transport]  # a new connection (commit-confirm proves it still works)
    log: Callable[[str], None]
    jobs: dict[str, StepResult] = field(default_factory=dict)  # validation jobs' results

    @property
    def t(self) -> Transport:
        return self.transport()

    def step(self, step: Step) -> StepResult:
        """Run one step on its own (the careful path)."""
        res = self.t.run(step.argv, timeout=step.timeout, stdin=step.stdin or None)
        return StepResult(res.code, res.stdout + res.stderr)

    def live_files(self) -> dict[str, ManagedFile]:
        return {p: f for p, f in self.files.items() if p not in self.held}

    def live_removed(self) -> dict[str, str]:
        return {p: u for p, u in self.removed.items() if p not in self.held}

    def units(self) -> set[str]:
        return {f.unit for f in self.live_files().values()} | set(self.live_removed().values())

    def unit_of(self, path: str) -> str | None:
        if path in self.files:
            return self.files[path].unit
        return self.removed.get(path)
