"""Publishers: the apply engine's sibling for targets that are not files on a server (a
nameserver taking RFC 2136 updates, the PowerDNS API, libvirt).

A publisher speaks the file engine's vocabulary without pretending to be files. Per run:
**plan** reads what the target serves now for the dirty units and compares it with the
desired state (an unchanged unit costs no write); **apply** sends the difference, as one
atomic message where the target allows it; **verify** reads back that the target serves
exactly the desired state; on any failure after apply, **revert** puts back what the plan
read; **report** tells the publisher, on success and on failure, which units are live and
which failed with the target's own words. A unit is what succeeds or fails as a whole: one
the target refuses fails alone and the others go through (``bisect``).

``publish()`` is the runner an Operation task calls (``servers.tasks.publish``): it takes the
dirty units of one target (``servers.engine.state``, scope ``marks_of(publisher, key)``),
does nothing without contacting the target when none is dirty, and clears the marks once the
run is reported. The Operation holds ``Publisher.lock_key(target)`` (a server's own lock key
when the target is a server, so a publish and a file apply never overlap there) and
heartbeats it. See docs/apply-engine.md, "Publishers".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.db import transaction

from servers.engine import state
from servers.engine.contracts import ApplyError, UnitFailed

PHASES = ("plan", "apply", "verify", "report")
Log = Callable[[str], None]
Hook = Callable[[str], None]


class Refused(ApplyError):
    """Nothing of the change was applied: the target refused it as a whole (a bad key, a
    zone it does not serve) or could not be reached before anything was sent. Unlike any
    other failure of ``apply`` it needs no revert."""


@dataclass(frozen=True)
class Desired:
    """The state one unit should have on the target, in the publisher's own terms. States
    compare with ``==``: a unit whose served state equals its desired state is unchanged."""

    unit: str
    state: Any


@dataclass(frozen=True)
class Change:
    """One unit to change: what the target served when planned, what it should serve.
    ``None`` on either side means the unit is absent (added, or to be removed)."""

    unit: str
    before: Any
    after: Any


@dataclass
class Plan:
    changes: dict[str, Change]
    unchanged: set[str] = field(default_factory=set)


@dataclass
class PublishResult:
    changed: set[str] = field(default_factory=set)  # units whose change is live, verified
    ok_units: set[str] = field(default_factory=set)  # units that serve as desired
    failed_units: dict[str, str] = field(default_factory=dict)  # units that kept their state
    # Failed units the target refused or did not serve: their marks stay, so the next
    # publish tries them again (a frozen zone thawed, a record changed by hand meanwhile).
    retry: set[str] = field(default_factory=set)
    unchanged: int = 0
    nothing_dirty: bool = False

    def summary(self) -> str:
        if self.nothing_dirty:
            return "Nothing to do"
        text = f"{len(self.changed)} changed, {self.unchanged} unchanged"
        if self.failed_units:
            text += f"; {len(self.failed_units)} failed: " + ", ".join(
                sorted(self.failed_units)[:5]
            )
        return text


class Publisher:
    """Base for a publisher. Subclasses set ``name`` and ``unit_prefix`` and implement
    ``target``, ``desired``, ``read``, ``apply``, ``revert`` and ``report``; ``plan`` and
    ``verify`` have defaults built on ``read``.

    Every method that talks to the target raises ``ApplyError`` (``retryable`` when running
    again can help) with the target's own words; secrets never go into a message.
    """

    name: str = ""  # registry key, and part of the Operation's arguments
    unit_prefix: str = ""  # the units it owns ("zone:", "rrset:")

    # -- the target ----------------------------------------------------------------------------
    def target(self, key: str) -> Any:
        """The target an Operation names by ``key`` (a nameserver row ...), with whatever is
        needed to reach it. Read in the worker, so secrets stay out of the Operation."""
        raise NotImplementedError

    def lock_key(self, target: Any) -> str:
        """Operations with the same lock key run one at a time. A server (or a model with a
        ``lock_key`` of its own, such as a nameserver) is locked by its own key."""
        return target.lock_key

    # -- what should be live (the provider's part) ---------------------------------------------
    def desired(self, target: Any, units: set[str] | None) -> Iterable[Desired | UnitFailed]:
        """The desired state of ``units`` (every unit when None). A unit asked for and not
        yielded is to be removed; ``UnitFailed`` keeps a unit as it is on the target."""
        raise NotImplementedError

    def report(self, target: Any, ok: set[str], failed: dict[str, str]) -> None:
        """After every run, successful or not: units now live as desired, units that failed
        (with why). Update statuses in bulk."""

    # -- the target's side ---------------------------------------------------------------------
    def read(self, target: Any, units: set[str] | None) -> dict[str, Any]:
        """What the target serves now for ``units`` (every unit the publisher manages there
        when None); an absent unit is left out. Its states compare equal to ``desired``'s."""
        raise NotImplementedError

    def plan(self, target: Any, desired: dict[str, Any], units: set[str] | None) -> Plan:
        """The difference between the target and ``desired``. Override to read less (a
        recorded digest or serial that proves a unit unchanged)."""
        served = self.read(target, units)
        scope = set(desired) | set(served) | (units or set())
        changes = {
            u: Change(u, served.get(u), desired.get(u))
            for u in sorted(scope)
            if served.get(u) != desired.get(u)
        }
        return Plan(changes, scope - set(changes))

    def apply(self, target: Any, changes: dict[str, Change]) -> dict[str, str]:
        """Send the changes. Returns the units the target refused (with its words); each of
        them must still serve its ``before``. Raise ``Refused`` when nothing was applied,
        ``ApplyError`` (or anything else) when the outcome is unknown: the runner reverts."""
        raise NotImplementedError

    def verify(self, target: Any, expected: dict[str, Any]) -> dict[str, str]:
        """Units that do not serve exactly ``expected`` (None: absent) -> what they serve."""
        served = self.read(target, set(expected))
        return {
            u: f"serves {self.describe(served.get(u))}, expected {self.describe(want)}"
            for u, want in sorted(expected.items())
            if served.get(u) != want
        }

    def revert(self, target: Any, changes: dict[str, Change]) -> None:
        """Make each unit serve its ``before`` again, whatever it serves now (the change may
        or may not have reached the target). Raise ``ApplyError`` if that fails."""
        raise NotImplementedError

    def describe(self, state: Any) -> str:
        """A state in words, for messages."""
        return "nothing" if state is None else str(state)


def marks_of(publisher: Publisher, key: str) -> str:
    """The dirty-mark scope of one target of one publisher (``servers.engine.state``)."""
    return f"{publisher.name}:{key}"


def bisect(
    units: Sequence[str],
    send: Callable[[list[str]], str | None],
    splittable: Callable[[str], bool] = lambda error: True,
) -> dict[str, str]:
    """Send ``units`` in one message; if the target refuses it (``send`` returns its words
    and applied none of it), send each half again, so a bad unit fails alone and the rest
    go through. ``splittable`` says whether a refusal can be one unit's fault (a record the
    policy denies) rather than the whole message's (a bad key): those fail every unit at
    once. Costs one message when all is well, about 2 log2(n) per bad unit.

    A ``Refused`` raised by ``send`` after an earlier message went through becomes an
    ``ApplyError``: part of the change is live, so the runner must revert."""
    failed: dict[str, str] = {}
    applied_any = False

    def go(group: list[str]) -> None:
        nonlocal applied_any
        try:
            error = send(group)
        except Refused as exc:
            if applied_any:
                raise ApplyError(str(exc), retryable=exc.retryable) from exc
            raise
        if error is None:
            applied_any = True
        elif len(group) == 1 or not splittable(error):
            failed.update(dict.fromkeys(group, error))
        else:
            half = len(group) // 2
            go(group[:half])
            go(group[half:])

    if units:
        go(list(units))
    return failed


class PublishRun:
    """One publish of one target: plan, apply, verify (revert on failure). ``report`` and
    the dirty marks are the caller's (``publish``)."""

    def __init__(
        self, publisher: Publisher, target: Any, log: Log = lambda m: None, hook: Hook | None = None
    ) -> None:
        self.publisher, self.target, self.log = publisher, target, log
        self.hook = hook or (lambda phase: None)
        # The units a failure is reported on: those asked for until the plan says which of
        # them change, then those.
        self.pending: set[str] = set()

    def run(self, units: set[str] | None) -> PublishResult:
        p, target = self.publisher, self.target
        self.pending = set(units or ())
        self.hook("plan")
        desired: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for item in p.desired(target, units):
            if isinstance(item, UnitFailed):
                failed[item.unit] = item.reason
            else:
                desired[item.unit] = item.state
        self.pending = set(desired) | set(failed) if units is None else set(units)
        for unit, why in sorted(failed.items()):
            self.log(f"{unit} keeps what it serves: {why}")
        plan = p.plan(target, desired, units)
        # A unit that could not be rendered is absent from ``desired``: never remove it.
        changes = {u: c for u, c in plan.changes.items() if u not in failed}
        scope = (plan.unchanged | set(changes)) - set(failed)
        result = PublishResult(unchanged=len(plan.unchanged - set(failed)))
        self.log(f"{len(scope)} units: {len(changes)} to change, {result.unchanged} unchanged.")
        self.pending = set(changes)
        self.hook("apply")
        if changes:
            sent = self._apply(changes, failed)
            self.hook("verify")
            if sent:
                self._verify(sent, failed)
            result.changed = set(sent) - set(failed)
            result.retry = set(changes) & set(failed)
            if result.changed:
                self.log(f"{len(result.changed)} units changed; the target serves them.")
        else:
            self.log("Nothing to send: the target serves every unit as desired.")
        result.failed_units = failed
        result.ok_units = scope - set(failed)
        return result

    def _apply(self, changes: dict[str, Change], failed: dict[str, str]) -> dict[str, Change]:
        try:
            refused = self.publisher.apply(self.target, changes)
        except Refused:
            raise  # nothing reached the target: nothing to revert
        except Exception as exc:  # noqa: BLE001 - any failure after sending is reverted
            self._revert_all(exc, changes)
        for unit, why in sorted(refused.items()):
            self.log(f"{unit} was refused and keeps what it serves: {why}")
        failed.update(refused)
        return {u: c for u, c in changes.items() if u not in refused}

    def _verify(self, sent: dict[str, Change], failed: dict[str, str]) -> None:
        p, target = self.publisher, self.target
        try:
            wrong = p.verify(target, {u: c.after for u, c in sent.items()})
            if not wrong:
                return
            for unit, why in sorted(wrong.items()):
                self.log(f"{unit} is reverted: the target took the change but {why}")
            back = {u: sent[u] for u in wrong}
            p.revert(target, back)
            still = p.verify(target, {u: c.before for u, c in back.items()})
            if still:
                raise ApplyError(
                    "reverting did not take: "
                    + "; ".join(f"{u} {why}" for u, why in sorted(still.items()))
                )
            failed.update(
                {u: f"the target took the change but {why} (reverted)" for u, why in wrong.items()}
            )
        except Exception as exc:  # noqa: BLE001 - any failure after sending is reverted
            self._revert_all(exc, sent)

    def _revert_all(self, exc: Exception, changes: dict[str, Change]) -> NoReturn:
        """Put back what the plan read for every unit sent; always raises ApplyError."""
        self.log(f"Reverting: {exc}")
        try:
            self.publisher.revert(self.target, changes)
            still = self.publisher.verify(self.target, {u: c.before for u, c in changes.items()})
            if still:
                raise ApplyError(
                    "; ".join(f"{u} {why}" for u, why in sorted(still.items())), retryable=True
                )
        except Exception as again:  # noqa: BLE001 - report both, never hide the first error
            units = sorted(changes)
            named = ", ".join(units[:20]) + (" ..." if len(units) > 20 else "")
            raise ApplyError(
                f"{exc}; restoring the previous state failed too: {again}. These units may "
                f"serve the new state: {named}. The next publish reads what the target serves "
                "first.",
                retryable=True,
            ) from exc
        raise ApplyError(f"{exc} (previous state restored)", retryable=True) from exc


def publish(
    publisher: Publisher, key: str, *, log: Log = lambda m: None, hook: Hook | None = None
) -> PublishResult:
    """Publish the dirty units of ``publisher``'s target ``key``; report how each fared
    (on failure too) and forget the marks taken. Raises ``ApplyError`` when the run failed:
    every unit then serves what it served before, unless the message says otherwise."""
    hook = hook or (lambda phase: None)
    scope = marks_of(publisher, key)
    units, upto = state.dirty(scope)
    if units == set():
        log("Every change is published already.")
        return PublishResult(nothing_dirty=True)
    target = publisher.target(key)
    run = PublishRun(publisher, target, log, hook)
    try:
        result = run.run(units)
    except Exception as exc:
        # Units this run was about stay pending no longer: they failed, with why.
        if run.pending:
            with transaction.atomic():
                publisher.report(target, set(), {u: f"Not published: {exc}" for u in run.pending})
        raise
    hook("report")
    with transaction.atomic():
        publisher.report(target, result.ok_units, result.failed_units)
        state.clear_dirty(scope, upto)
        if result.retry:
            state.mark_dirty(scope, result.retry)
    return result
