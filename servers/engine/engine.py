"""The apply engine: make a server's managed files match the database, and say exactly what
is live.

Phases (each a hook point for fault tests): **render** the desired files of the units asked
for; **plan** against what the database says is applied (or, after an interrupted run or
when asked, against a hash of every file on the server); **stage** every new file beside its
target in one round trip, confirmed and fsynced; **validate** each touched service with its
own tool, holding back the units that fail; **swap** the rest in (hard-linked backups,
pending reload recorded on the server first); **reload** the services in their declared
order and **verify** that each reload took effect and each changed unit serves; a unit that
does not is rolled back and its services reloaded again; **manifest**: commit the manifest,
clear the pending reload, then record the new state in the database.

Any failure after the swap rolls everything back over a fresh connection if need be; if even
that fails, the error says which files are new and the next apply checks every file first.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from servers.engine import registry
from servers.engine.contracts import ApplyError, ManagedFile, UnitFailed
from servers.engine.profile import Profile, profile_for
from servers.engine.remote import (
    Batch,
    BatchResult,
    FileState,
    LockedError,
    RemoteRun,
    StagingFailed,
)
from servers.engine.run import ServiceRun
from servers.models import AppliedFile, Server
from servers.transport import ConnectionLost, Transport, TransportError

PHASES = ("render", "plan", "stage", "validate", "swap", "reload", "verify", "manifest")
Log = Callable[[str], None]
Hook = Callable[[str], None]


@dataclass
class ApplyResult:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    failed_units: dict[str, str] = field(default_factory=dict)
    ok_units: set[str] = field(default_factory=set)
    unchanged: int = 0
    round_trips: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


@dataclass(frozen=True)
class Entry:
    """A file as applied (database) or as found (server)."""

    sha256: str
    mode: int
    owner: str
    group: str
    service: str = ""
    unit: str = ""

    def matches(self, f: ManagedFile) -> bool:
        return (self.sha256, self.mode, self.owner, self.group) == (
            f.sha256,
            f.mode,
            f.owner,
            f.group,
        )


def shard_of(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:2]


def render(
    server: Server, profile: Profile, units: set[str] | None
) -> tuple[dict[str, ManagedFile], dict[str, str]]:
    """The desired files of ``units`` (all when None), and units that could not render."""
    files: dict[str, ManagedFile] = {}
    failed: dict[str, str] = {}
    for provider in registry.providers():
        wanted = None if units is None else {u for u in units if u.startswith(provider.unit_prefix)}
        if wanted is not None and not wanted:
            continue
        for f in provider.files(server, profile, wanted):
            if isinstance(f, UnitFailed):
                failed[f.unit] = f.reason
            elif f.path in files:
                raise ApplyError(f"two managed files want {f.path}")
            else:
                files[f.path] = f
    return files, failed


class Engine:
    """One apply of one server."""

    def __init__(
        self,
        server: Server,
        t: Transport,
        log: Log = lambda m: None,
        *,
        run_id: str = "",
        reconnect: Callable[[], Transport] | None = None,
        hook: Hook | None = None,
        run_is_alive: Callable[[str], bool] = lambda run: True,
        batch: bool = True,
        step_hook: Callable[[str], list] | None = None,
    ) -> None:
        self.server, self.t, self.log = server, t, log
        self.profile = profile_for(server)
        self.run_id = run_id or secrets.token_hex(6)
        self.reconnect = reconnect
        self.hook = hook or (lambda phase: None)
        self.run_is_alive = run_is_alive
        self.batch = batch
        self.step_hook = step_hook or (lambda position: [])
        self.batch_result = None
        self.unknown_reloads: list[str] = []
        self.remote = RemoteRun(t, self.profile.state_dir, self.run_id)
        self._trips_before = t.round_trips
        self._trips_done = 0
        self._manifest_shards: list[str] = []
        self.changed_units: set[str] = set()

    # -- small helpers -----------------------------------------------------------------------
    @property
    def round_trips(self) -> int:
        return self._trips_done + self.t.round_trips - self._trips_before

    def phase(self, name: str) -> None:
        self.hook(name)

    def _fresh_transport(self) -> None:
        """Replace a broken connection (the rollback must not depend on the one that broke)."""
        if self.reconnect is None:
            raise ApplyError("the connection broke and no new one can be opened")
        self._trips_done += self.t.round_trips - self._trips_before
        self.t = self.reconnect()
        self._trips_before = self.t.round_trips
        self.remote = RemoteRun(self.t, self.profile.state_dir, self.run_id)

    def _service_run(self, name: str, writes, removes, held) -> ServiceRun:
        return ServiceRun(
            name=name,
            profile=self.profile,
            run_id=self.run_id,
            files={p: f for p, f in writes.items() if f.service == name},
            removed={p: e.unit for p, e in removes.items() if e.service == name},
            held=held,
            transport=lambda: self.t,
            remote=lambda: self.remote,
            fresh=lambda: self.reconnect() if self.reconnect else self.t,
            log=self.log,
        )

    # -- the apply ----------------------------------------------------------------------------
    def apply(self, units: set[str] | None = None, *, check_server: bool = False) -> ApplyResult:
        """Apply ``units`` (every unit when None). ``check_server`` plans against a hash of
        the server's files instead of the database's record (after an interrupted run)."""
        result = ApplyResult()
        if self.server.apply_run:  # a run was interrupted: whatever it touched is checked
            units, check_server = None, True
        self.phase("render")
        desired, failed = render(self.server, self.profile, units)
        self.phase("plan")
        applied = self._applied(units, desired)
        # A unit that could not render keeps whatever it has on the server.
        applied_held = {p for p, e in applied.items() if e.unit in failed}
        inherited: list[str] = []
        actual: dict[str, FileState] = {}
        if check_server:
            inherited = self._recover()
            actual = self.remote.hash(sorted(set(desired) | set(applied)))
            basis = {
                p: Entry(s.sha256, s.mode, s.owner, s.group, applied[p].service, applied[p].unit)
                if p in applied
                else Entry(s.sha256, s.mode, s.owner, s.group)
                for p, s in actual.items()
            }
        else:
            basis = applied
        writes = {p: f for p, f in desired.items() if not (p in basis and basis[p].matches(f))}
        removes = {
            p: e
            for p, e in basis.items()
            if p not in desired and p in applied and p not in applied_held
        }
        scope = (
            {f.unit for f in desired.values()} | {e.unit for e in applied.values()} | set(failed)
        )
        for unit, why in failed.items():
            self.log(f"{unit} keeps its previous files: {why}")
        result.unchanged = len(desired) - len(writes)
        self.log(
            f"{len(desired)} managed files: {len(writes)} to write, {len(removes)} to remove, "
            f"{result.unchanged} unchanged."
        )
        if not writes and not removes and not inherited:
            self._record(desired, {}, {}, set(), actual, check_server)
            result.ok_units = scope - set(failed)
            result.failed_units = failed
            result.round_trips = self.round_trips
            self.log("Nothing to do.")
            return result

        self.phase("stage")
        self.changed_units = {f.unit for f in writes.values()} | {e.unit for e in removes.values()}
        held: set[str] = set()
        services = sorted(
            {f.service for f in writes.values()} | {e.service for e in removes.values()},
            key=lambda n: (registry.service(n).reload_order, n),
        )
        instances = {name: registry.service(name) for name in {*services, *inherited}}
        runs = {name: self._service_run(name, writes, removes, held) for name in instances}
        jobs = [j for name in services for j in instances[name].validation_jobs(runs[name])]
        manifest = (desired, writes, removes, held, actual, check_server)
        to_reload = self._to_reload(writes, removes, held, inherited, instances)
        reloaded: list[str] = []
        # Every validation decided on the server: the batch can go along with the staging.
        plan = None
        if self.batch and to_reload and all(instances[n].validated_by_jobs for n in services):
            plan = self._batch_plan(to_reload, instances, runs, held, manifest)
            self._mark_in_flight(True)
        try:
            results, res = self._stage(writes, removes, jobs, plan)
        except ConnectionLost as exc:
            if plan is None:
                raise
            # The server may have gone on into the batch: find out how it ended.
            self.unknown_reloads = list(plan[2])
            self._fresh_transport()
            results, res = {}, self.remote.batch_outcome()
            if res is None:
                self._emergency_rollback(exc, [], instances, runs, set(writes) | set(removes))
        except ApplyError as exc:
            if plan is not None:
                self._mark_in_flight(False)
            if isinstance(exc, StagingFailed):
                # Nothing was swapped: drop the partial staging and free the server's lock
                # now, rather than leave both to the next run (a minute's wait for it).
                self._abort()
            raise
        self.batch_result = res
        if res is not None:  # validated, swapped and run in the same round trip
            try:
                committed = self._after_batch(
                    res, plan, to_reload, instances, runs, held, failed, reloaded
                )
                if not committed:
                    self.phase("manifest")
                    self.remote.commit(*self._manifest(*manifest))
            except Exception as exc:  # noqa: BLE001 - every failure after the swap is rolled back
                reloaded += [n for n in self.unknown_reloads if n not in reloaded]
                swapped = set(writes) | set(removes)
                self._emergency_rollback(exc, reloaded, instances, runs, swapped)
            self.log(f"Swapped in {len(writes) + len(removes)} files.")
            result.reloaded = reloaded
            return self._finish(
                result, desired, writes, removes, held, failed, scope, actual, check_server
            )
        if plan is not None:
            self._mark_in_flight(False)  # a validation failed: nothing was swapped
        for run in runs.values():
            run.jobs = dict(results)
        try:
            self.phase("validate")
            self._validate(services, instances, runs, held, failed, writes, removes)
        except Exception:
            self._abort()
            raise

        swapped = {p for p in [*writes, *removes] if p not in held}
        to_reload = self._to_reload(writes, removes, held, inherited, instances)
        if not to_reload:
            self._abort()
            return self._finish(
                result, desired, writes, removes, held, failed, scope, actual, check_server
            )
        self._mark_in_flight(True)
        try:
            self.phase("swap")
            if self.batch:
                plan = self._batch_plan(to_reload, instances, runs, held, manifest)
                res = self._run_batch(plan, lambda: self.remote.go(plan[0]))
                committed = self._after_batch(
                    res, plan, to_reload, instances, runs, held, failed, reloaded
                )
            else:
                self.remote.swap(to_reload, held)
                self._reload_and_verify(to_reload, instances, runs, held, failed, reloaded)
                committed = False
            self.log(f"Swapped in {len(swapped)} files.")
            if not committed:
                self.phase("manifest")
                self.remote.commit(*self._manifest(*manifest))
        except Exception as exc:  # noqa: BLE001 - every failure after the swap is rolled back
            reloaded += [n for n in self.unknown_reloads if n not in reloaded]
            self._emergency_rollback(exc, reloaded, instances, runs, swapped)
        result.reloaded = reloaded
        return self._finish(
            result, desired, writes, removes, held, failed, scope, actual, check_server
        )

    def _to_reload(self, writes, removes, held, inherited, instances) -> list[str]:
        swapped = {p for p in [*writes, *removes] if p not in held}
        names = {writes[p].service if p in writes else removes[p].service for p in swapped}
        return sorted(names | set(inherited), key=lambda n: (instances[n].reload_order, n))

    def _mark_in_flight(self, on: bool) -> None:
        """Recorded before anything may be swapped: if the panel never hears back, the next
        apply checks every file first."""
        value = self.run_id if on else ""
        Server.objects.filter(pk=self.server.pk).update(apply_run=value)
        self.server.apply_run = value

    def _batch_plan(self, to_reload, instances, runs, held, manifest) -> tuple[Batch, list, list]:
        """The batch for ``go``: every batchable service's reload and verify steps in order,
        and the manifest when every service to reload is batchable (then it commits)."""
        names = []
        for name in to_reload:
            if not instances[name].batchable:
                break
            names.append(name)
        steps, owners = [], []
        for name in names:
            for kind, step in (
                ("reload", instances[name].reload_step(runs[name])),
                ("verify", instances[name].verify_step(runs[name])),
            ):
                for extra in self.step_hook(f"before-{kind}:{name}"):
                    steps.append(extra)
                    owners.append(("", "test"))
                if step is not None:
                    steps.append(step)
                    owners.append((name, kind))
        commit = len(names) == len(to_reload)
        for extra in self.step_hook("before-commit") if commit else ():
            steps.append(extra)
            owners.append(("", "test"))
        shards, drop = self._manifest(*manifest) if commit else (None, [])
        return Batch(list(to_reload), set(held), steps, shards, drop), owners, names

    def _run_batch(self, plan, run_it) -> BatchResult:
        """Run a batch (``run_it``); if the connection drops meanwhile, read how it ended."""
        batch, _owners, names = plan
        self.unknown_reloads = list(names)  # until the batch's outcome is known
        try:
            res = run_it()
        except ConnectionLost as exc:
            self.log(f"The connection dropped while the server ran the change ({exc}).")
            self._fresh_transport()
            res = self.remote.batch_outcome()
            if res is None:
                raise ApplyError(f"{exc}; how the change ended on the server is unknown") from exc
            self.log("A new connection read how the server finished it.")
        self.batch_result = res
        self.unknown_reloads = []
        return res

    def _after_batch(self, res, plan, to_reload, instances, runs, held, failed, reloaded) -> bool:
        """Take stock of a batch: True if it committed; else the careful path goes on from
        the service whose step failed (or the first one the batch could not hold)."""
        _batch, owners, names = plan
        for (name, kind), step_result in zip(owners, res.steps, strict=False):
            if kind == "reload" and step_result.ok and name not in reloaded:
                reloaded.append(name)
        if res.committed:
            for name in names:
                if name not in reloaded:
                    reloaded.append(name)
                if runs[name].units():
                    self.log(f"Reloaded {name}; it serves the new configuration.")
            return True
        done, first_bad = set(names), {}
        if res.stopped:
            index = len(res.steps) - 1
            if index >= len(owners):
                raise ApplyError(f"committing failed on the server: {res.steps[-1].output}")
            name, kind = owners[index]
            outcome = res.steps[-1]
            if kind == "test":
                raise ApplyError(f"a step failed on the server: {outcome.output.strip()}")
            service, run = instances[name], runs[name]
            if kind == "reload":
                error = service.reload_error(run, outcome)
                units = service.blame(run, error) or run.units()
                if not units:
                    raise ApplyError(f"{name} did not load the new configuration: {error}")
                first_bad[name] = {u: f"{name} did not take the change: {error}" for u in units}
            else:
                first_bad[name] = service.verify_errors(run, outcome) or {
                    u: f"verification failed: {outcome.output.strip()[:500]}" for u in run.units()
                }
            done = set(names[: names.index(name)])
        for name in done:
            if runs[name].units():
                self.log(f"Reloaded {name}; it serves the new configuration.")
        self._reload_and_verify(
            to_reload, instances, runs, held, failed, reloaded, done=done, first_bad=first_bad
        )
        return False

    # -- planning ----------------------------------------------------------------------------
    def _applied(self, units: set[str] | None, desired: dict[str, ManagedFile]) -> dict[str, Entry]:
        rows = AppliedFile.objects.filter(server=self.server)
        if units is not None:
            rows = rows.filter(unit__in=units) | rows.filter(path__in=list(desired))
        return {
            path: Entry(sha, mode, owner, group, service, unit)
            for path, sha, mode, owner, group, service, unit in rows.values_list(
                "path", "sha256", "mode", "owner", "group", "service", "unit"
            )
        }

    def _recover(self) -> list[str]:
        """After an interrupted run: services whose reload it never finished."""
        status = self.remote.status()
        self._manifest_shards = status.shards
        if status.pending_run:
            self.log(
                f"Run {status.pending_run} was interrupted after swapping files in; checking "
                f"every file and reloading {', '.join(status.pending_services) or 'nothing'}."
            )
        return [s for s in status.pending_services if s]

    # -- staging and validation ----------------------------------------------------------------
    def _stage(self, writes, removes, jobs, plan=None):
        files = [writes[p] for p in sorted(writes)]
        then = plan[0] if plan else None
        try:
            out = self.remote.stage(files, sorted(removes), jobs=jobs, then=then)
        except LockedError as exc:
            if self.run_is_alive(exc.holder):
                raise
            self.log(f"Taking over the lock left by run {exc.holder}, which is no longer running.")
            out = self.remote.stage(
                files, sorted(removes), jobs=jobs, take_over=exc.holder, then=then
            )
        self.log(f"Staged {len(files)} files on the server.")
        return out

    def _validate(self, services, instances, runs, held, failed, writes, removes) -> None:
        """Validate each touched service; a unit failing anywhere is held back everywhere, and
        services already validated are checked again without it."""
        validated: set[str] = set()
        pending = list(services)
        while pending:
            name = pending.pop(0)
            self.log(f"Validating {name} with the staged files.")
            bad = instances[name].validate(runs[name])
            validated.add(name)
            new = {u: e for u, e in bad.items() if u not in failed}
            if not new:
                continue
            failed.update(new)
            for unit, error in new.items():
                self.log(f"{unit} failed validation and keeps its previous files: {error}")
            held.update(self._unit_paths(set(new), writes, removes))
            touched = {writes[p].service for p in writes if writes[p].unit in new} | {
                removes[p].service for p in removes if removes[p].unit in new
            }
            pending.extend(sorted((touched & validated) - {name} - set(pending)))

    @staticmethod
    def _unit_paths(units: set[str], writes, removes) -> set[str]:
        return {p for p, f in writes.items() if f.unit in units} | {
            p for p, e in removes.items() if e.unit in units
        }

    def _abort(self) -> None:
        try:
            if not getattr(self.t, "active", True):
                self._fresh_transport()
            self.remote.abort()
        except (TransportError, ApplyError) as exc:
            self.log(f"Cleaning up the staged files failed (the next run does it): {exc}")

    # -- reload, verify, roll back ----------------------------------------------------------------
    def _reload_and_verify(
        self, to_reload, instances, runs, held, failed, reloaded, *, done=(), first_bad=None
    ) -> None:
        """Reload each service in order and verify it; units that fail are rolled back (in
        every service) and the services they touched reloaded again and verified. ``done``
        services already serve the change; ``first_bad`` holds a service's known failure."""
        first_bad = first_bad or {}
        for name in to_reload:
            if name in done:
                continue
            run, service = runs[name], instances[name]
            if name in first_bad:
                bad = first_bad[name]
            else:
                bad = self._reload_once(name, service, run, reloaded)
            if bad is None:
                continue
            suspects = set(bad)
            while bad:
                failed.update(bad)
                for unit, why in bad.items():
                    self.log(f"{unit} is rolled back: {why}")
                touched = self._roll_back_units(set(bad), runs, held)
                again = [n for n in to_reload if n in touched and (n in reloaded or n == name)]
                bad = {}
                for other in again:
                    left = self._reload_once(other, instances[other], runs[other], reloaded)
                    if left and other == name and not suspects >= set(left):
                        suspects |= set(left)
                        bad = left  # the reload named more units: roll those back too
                        break
                    if left:
                        raise ApplyError(
                            f"{other} still fails after rolling back {', '.join(sorted(suspects))}"
                            ": " + "; ".join(f"{u}: {e}" for u, e in sorted(left.items()))
                        )

    def _reload_once(self, name, service, run, reloaded) -> dict[str, str] | None:
        """None when the service serves the change; else the units to roll back -> why."""
        self.phase("reload")
        try:
            service.reload(run)
        except ApplyError as exc:
            units = service.blame(run, str(exc)) or run.units()
            if not units:
                raise
            return {u: f"{name} did not take the change: {exc}" for u in units}
        if name not in reloaded:
            reloaded.append(name)
        self.log(f"Reloaded {name}.")
        self.phase("verify")
        bad = service.verify(run)
        if not bad and run.units():
            self.log(f"{name} serves the new configuration.")
        return bad or None

    def _roll_back_units(self, units: set[str], runs, held) -> set[str]:
        """Put back every file of ``units`` in every service; the services touched."""
        paths, touched = set(), set()
        for name, run in runs.items():
            mine = {p for p, f in run.files.items() if f.unit in units}
            mine |= {p for p, u in run.removed.items() if u in units}
            mine -= held
            if mine:
                touched.add(name)
                paths |= mine
        if paths:
            self.remote.rollback(paths)
            held.update(paths)
        return touched

    def _emergency_rollback(self, exc, reloaded, instances, runs, swapped) -> None:
        self.log(f"Rolling back: {exc}")
        try:
            if isinstance(exc, ConnectionLost) or not getattr(self.t, "active", True):
                self._fresh_transport()
                self.log("Opened a new connection for the rollback.")
            self.remote.rollback(None)
            for name in reloaded:
                instances[name].reload(runs[name])
                self.log(f"Reloaded {name} with the previous files.")
        except Exception as again:  # noqa: BLE001 - report both, never hide the first error
            new = ", ".join(sorted(swapped)[:20]) + (" ..." if len(swapped) > 20 else "")
            raise ApplyError(
                f"{exc}; restoring the previous files failed too: {again}. These files may be "
                f"new on the server: {new}. The next apply checks every file first.",
                retryable=True,
            ) from exc
        try:
            self.remote.commit({}, [])
        except Exception as again:  # noqa: BLE001
            raise ApplyError(
                f"{exc} (previous files restored, but clearing the run's record on the server "
                f"failed: {again}; the next apply checks every file first)",
                retryable=True,
            ) from exc
        Server.objects.filter(pk=self.server.pk).update(apply_run="")
        self.server.apply_run = ""
        raise ApplyError(f"{exc} (previous files restored)", retryable=True) from exc

    # -- manifest and bookkeeping ---------------------------------------------------------------
    def _final_entries(self, desired, writes, removes, held) -> tuple[dict, set[str]]:
        """Entries that change in the record: path -> ManagedFile (written) or None."""
        changes: dict[str, ManagedFile | None] = {}
        for p, f in writes.items():
            if p not in held:
                changes[p] = f
        for p in removes:
            if p not in held:
                changes[p] = None
        return changes, {shard_of(p) for p in changes}

    def _manifest(self, desired, writes, removes, held, actual, check_server):
        changes, touched = self._final_entries(desired, writes, removes, held)
        rows = AppliedFile.objects.filter(server=self.server)
        if not check_server:
            rows = rows.filter(shard__in=touched)
        current: dict[str, dict[str, tuple]] = defaultdict(dict)
        for path, sha, mode, owner, group, service, unit, shard in rows.values_list(
            "path", "sha256", "mode", "owner", "group", "service", "unit", "shard"
        ):
            current[shard][path] = (sha, mode, owner, group, service, unit)
        if check_server:
            # What was found on the server replaces the record, as _record does.
            for path, entry in self._found(desired, actual).items():
                shard = shard_of(path)
                current[shard].pop(path, None)
                if entry is not None:
                    current[shard][path] = entry
            touched = set(current) | touched | set(self._manifest_shards)
        for path, f in changes.items():
            shard = shard_of(path)
            if f is None:
                current[shard].pop(path, None)
            else:
                current[shard][path] = (f.sha256, f.mode, f.owner, f.group, f.service, f.unit)
        shards, drop = {}, []
        for shard in sorted(touched):
            entries = current.get(shard, {})
            if not entries:
                drop.append(shard)
                continue
            shards[shard] = "".join(
                f"{sha}\t{mode:o}\t{owner}\t{group}\t{service}\t{unit}\t{path}\n"
                for path, (sha, mode, owner, group, service, unit) in sorted(entries.items())
            ).encode()
        return shards, drop

    def _found(self, desired, actual: dict[str, FileState]) -> dict[str, tuple | None]:
        """Check-server mode: every path looked at -> its entry as found (None: missing)."""
        applied = {
            path: (service, unit)
            for path, service, unit in AppliedFile.objects.filter(server=self.server).values_list(
                "path", "service", "unit"
            )
        }
        out: dict[str, tuple | None] = {}
        for path in set(desired) | set(applied):
            found = actual.get(path)
            f = desired.get(path)
            service, unit = (f.service, f.unit) if f else applied[path]
            out[path] = (
                None
                if found is None
                else (found.sha256, found.mode, found.owner, found.group, service, unit)
            )
        return out

    def _record(self, desired, writes, removes, held, actual, check_server) -> None:
        """Write what is now live into the database (one transaction)."""
        changes, _ = self._final_entries(desired, writes, removes, held)
        now = timezone.now()
        with transaction.atomic():
            gone = [p for p, f in changes.items() if f is None]
            AppliedFile.objects.filter(server=self.server, path__in=gone).delete()
            if check_server:
                # The server is the truth: what was found replaces the record for every path
                # this run looked at and did not write.
                self._record_found(desired, actual, changes, now)
            new = [(p, f) for p, f in changes.items() if f is not None]
            AppliedFile.objects.filter(server=self.server, path__in=[p for p, _f in new]).delete()
            AppliedFile.objects.bulk_create(
                [
                    AppliedFile(
                        server=self.server,
                        path=p,
                        sha256=f.sha256,
                        mode=f.mode,
                        owner=f.owner,
                        group=f.group,
                        service=f.service,
                        unit=f.unit,
                        shard=shard_of(p),
                        applied_at=now,
                    )
                    for p, f in new
                ],
                batch_size=500,
            )
            Server.objects.filter(pk=self.server.pk).update(apply_run="", applied_at=now)
        self.server.apply_run = ""

    def _record_found(self, desired, actual: dict[str, FileState], changes, now) -> None:
        found = {p: e for p, e in self._found(desired, actual).items() if p not in changes}
        AppliedFile.objects.filter(server=self.server, path__in=list(found)).delete()
        AppliedFile.objects.bulk_create(
            [
                AppliedFile(
                    server=self.server,
                    path=path,
                    sha256=sha,
                    mode=mode,
                    owner=owner,
                    group=group,
                    service=service,
                    unit=unit,
                    shard=shard_of(path),
                    applied_at=now,
                )
                for path, entry in sorted(found.items())
                if entry is not None
                for sha, mode, owner, group, service, unit in [entry]
            ],
            batch_size=500,
        )

    def _finish(
        self, result, desired, writes, removes, held, failed, scope, actual, check_server
    ) -> ApplyResult:
        self._record(desired, writes, removes, held, actual, check_server)
        result.written = sorted(p for p in writes if p not in held)
        result.removed = sorted(p for p in removes if p not in held)
        result.failed_units = dict(failed)
        result.ok_units = scope - set(failed)
        result.round_trips = self.round_trips
        return result


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(step)
