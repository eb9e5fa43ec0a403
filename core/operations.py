"""Operations: start, run, cancel and retry long work, with progress pushed as it happens.

A feature starts work with ``start_operation(kind=..., task="app.tasks.func", ...)``; the
worker calls ``func(ctx, **args)`` with an ``OperationContext`` to log and report progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Model
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.tasks import async_task

from core import audit, events, rollups
from core.models import Operation, OperationLock, OperationLogLine
from core.policy import ADMIN, is_staff, restrict, role_of

log = logging.getLogger(__name__)
LOCK_POLL = 0.5


class OperationCancelled(Exception):
    """Raised inside a task when a user cancelled the operation."""


class ClaimLost(Exception):
    """This worker no longer holds the operation (it stopped, or was taken for dead and the
    operation requeued) before it started it: another worker runs it."""


class OperationError(Exception):
    """Raised by a task to fail the operation with a message meant for the user."""


def start_operation(
    *,
    kind: str,
    task: str,
    owner,
    requested_by=None,
    target: Model | None = None,
    target_action: str = "",
    lock_key: str = "",
    args: dict | None = None,
    retry_of: Operation | None = None,
) -> Operation:
    """Create a queued Operation and enqueue its task once the transaction commits.

    ``target_action`` is the policy action on ``target`` this needed (e.g. "apply"): a retry
    must be allowed it again, by whoever retries, at that moment.
    """
    from django.contrib.contenttypes.models import ContentType

    import_string(task)  # fail now, not in the worker, on a typo
    with transaction.atomic():
        op = Operation.objects.create(
            kind=kind,
            task=task,
            args=args or {},
            target_type=ContentType.objects.get_for_model(target) if target else None,
            target_id=str(getattr(target, "uuid", None) or target.pk) if target else "",
            target_label=str(target)[:200] if target else "",
            target_action=target_action,
            lock_key=lock_key,
            owner=owner,
            requested_by=requested_by,
            retry_of=retry_of,
        )
        audit.record("operation.start", op, actor=requested_by, changes={"kind": [None, kind]})
        events.operation_changed(op)
        transaction.on_commit(lambda: _enqueue(op))
    return op


def _enqueue(op: Operation) -> None:
    async_task(
        "core.operations.execute_operation",
        op.pk,
        task_name=f"{op.kind}:{op.uuid.hex[:8]}",
        group=op.kind,
    )


def cancel_operation(op: Operation, *, actor) -> Operation:
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=op.pk)
        if op.is_finished:
            raise OperationError("The operation has already finished.")
        if op.state == Operation.State.QUEUED:
            op.state = Operation.State.CANCELLED
            op.finished_at = timezone.now()
            op.message = "Cancelled before it started."
        op.cancel_requested = True
        op.save()
        if op.is_finished:
            rollups.count_finished(op)
        audit.record("operation.cancel", op, actor=actor)
        events.operation_changed(op)
    return op


def retry_operation(op: Operation, *, actor) -> Operation:
    """Start the same work again, checked exactly as starting it fresh would be.

    The target may have moved to another owner or out of the actor's reach since the first
    run: the actor must be allowed the target action *now*, and the new operation belongs to
    the target's current owner (never to whoever owned it back then).
    """
    if op.state not in (Operation.State.FAILED, Operation.State.CANCELLED):
        raise OperationError("Only failed or cancelled operations can be retried.")
    owner = op.owner
    target = None
    if op.target_type_id:
        model = op.target_type.model_class()
        target = op.target()
        reachable = target is not None and (
            restrict(model, actor, op.target_action or "change").filter(pk=target.pk).exists()
        )
        if not reachable:
            raise OperationError("You may no longer start this on its target.")
        owner = getattr(target, "owner", None) or owner
    elif role_of(actor) != ADMIN and actor.pk != op.requested_by_id:
        raise OperationError("Only whoever started this, or an administrator, may retry it.")
    return start_operation(
        kind=op.kind,
        task=op.task,
        owner=owner,
        requested_by=actor,
        target=target,
        target_action=op.target_action,
        lock_key=op.lock_key,
        args=op.args,
        retry_of=op,
    )


class OperationContext:
    """What a task gets to report with."""

    def __init__(self, op: Operation) -> None:
        self.op = op

    def log(self, message: str, level: str = OperationLogLine.Level.INFO) -> None:
        line = OperationLogLine.objects.create(operation=self.op, level=level, message=message)
        events.log_line(self.op, line)

    def progress(self, percent: int, message: str | None = None) -> None:
        self.check_cancelled()
        self.op.progress = max(0, min(100, int(percent)))
        fields = ["progress", "updated_at"]
        if message is not None:
            self.op.message = message[:300]
            fields.append("message")
        self.op.save(update_fields=fields)
        events.operation_changed(self.op)
        if message:
            self.log(message)

    def check_cancelled(self) -> None:
        current = Operation.objects.filter(pk=self.op.pk).values_list("cancel_requested", flat=True)
        if current and current[0]:
            raise OperationCancelled()


def _finish(
    op: Operation, state: str, *, message: str = "", error: str = "", detail: str = ""
) -> None:
    op.state = state
    op.finished_at = timezone.now()
    if state == Operation.State.SUCCEEDED:
        op.progress = 100
    op.message = message[:300] or op.message
    op.error = error
    op.error_detail = detail if detail != error else ""
    op.save()
    rollups.count_finished(op)
    events.operation_changed(op)
    target = op.target()
    if target is not None:
        events.changed(target)  # an operation's work (status, facts ...) shows on its target


def expected_failure(exc: BaseException) -> bool:
    """A failure the operation reports to its owner (a server that refuses the connection,
    a full disk) and that needs no traceback in the log: an OperationError, or an adapter's
    error, which carries a ``retryable`` flag by convention (see CONVENTIONS, adapters)."""
    return isinstance(exc, OperationError) or hasattr(exc, "retryable")


NETWORK_FAILURE = (
    "The connection failed: the server refused it, did not answer, or closed it early. "
    "Check the address and port, or ask support for the details."
)


def public_error(exc: BaseException) -> str:
    """What an operation's owner is told: low-level network failures are summarised, so the
    text cannot tell what listens on some port (staff keep the full text)."""
    seen: BaseException | None = exc
    while seen is not None:
        module = type(seen).__module__ or ""
        if isinstance(seen, OSError | EOFError) or module.split(".")[0] == "paramiko":
            return NETWORK_FAILURE
        seen = seen.__cause__ or seen.__context__
    return str(exc) or exc.__class__.__name__


def execute_operation(op_id: int) -> str:
    """django-q2 entry point: run one operation to its end, whatever happens.

    The operation is claimed atomically first (core.workers): one that another worker holds,
    that was requeued, or that has finished is left alone, so a task delivered twice runs once.
    """
    from core import workers

    me = workers.worker_id()
    op = Operation.objects.select_related("owner").get(pk=op_id)
    if op.state != Operation.State.QUEUED:
        return op.state
    if workers.stopping(me):
        # SIGTERM came after this was pulled: another worker runs it.
        workers._requeue([op.pk], holder=me, why="Its worker is stopping: queued again.")
        return "requeued"
    claimed = Operation.objects.filter(
        pk=op.pk, state=Operation.State.QUEUED, worker__in=("", me)
    ).update(worker=me, claimed_at=timezone.now())
    if not claimed:
        return "elsewhere"
    op.worker = me
    ctx = OperationContext(op)
    if op.cancel_requested:
        _finish(op, Operation.State.CANCELLED, message="Cancelled before it started.")
        return op.state
    try:
        with LockHolder(op, ctx), Heartbeat(op):
            if not _mark_running(op, me):
                # Given to another worker while this one waited, or cancelled.
                return op.state if op.is_finished else "requeued"
            events.operation_changed(op)
            func = import_string(op.task)
            result = func(ctx, **op.args)
        _finish(op, Operation.State.SUCCEEDED, message=str(result or "Done"))
    except ClaimLost:
        return "requeued"
    except OperationCancelled:
        op.refresh_from_db()
        if not op.is_finished:  # cancelled while queued: cancel_operation ended it already
            ctx.log("Cancelled by request.", OperationLogLine.Level.WARNING)
            _finish(op, Operation.State.CANCELLED, message="Cancelled")
    except Exception as exc:  # noqa: BLE001 - every failure must end the operation
        detail = str(exc) or exc.__class__.__name__
        if expected_failure(exc):
            log.warning("operation %s (%s) failed: %s", op.uuid, op.kind, detail)
        else:
            log.exception("operation %s (%s) failed", op.uuid, op.kind)
        # Whoever owns the operation reads its error; only staff get low-level details.
        text = detail if is_staff(op.owner) else public_error(exc)
        ctx.log(text, OperationLogLine.Level.ERROR)
        _finish(op, Operation.State.FAILED, message="Failed", error=text, detail=detail)
    return op.state


def _mark_running(op: Operation, me: str) -> bool:
    """queued -> running, only if this worker still holds it: after this, a dead worker's
    operation is failed, never run again (its remote steps may be half done)."""
    now = timezone.now()
    started = Operation.objects.filter(
        pk=op.pk, state=Operation.State.QUEUED, worker=me, cancel_requested=False
    ).update(
        state=Operation.State.RUNNING,
        started_at=now,
        heartbeat_at=now,
        updated_at=now,
        message="Started",
    )
    if not started:
        op.refresh_from_db()
        if op.cancel_requested and not op.is_finished:
            raise OperationCancelled()
        return False
    op.state, op.started_at, op.heartbeat_at, op.message = "running", now, now, "Started"
    return True


class Heartbeat:
    """While a task runs, a thread stamps its operation every few seconds, so a worker that
    died is recognised within a minute (its lock is then taken over, the operation failed)."""

    def __init__(self, op: Operation) -> None:
        self.op = op
        self.every = settings.PANEL_HEARTBEAT_SECONDS
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self):
        if self.every > 0:
            self.thread = threading.Thread(target=self._beat, daemon=True, name="op-heartbeat")
            self.thread.start()
        return self

    def _beat(self) -> None:
        try:
            while not self.stop.wait(self.every):
                try:
                    Operation.objects.filter(pk=self.op.pk).update(heartbeat_at=timezone.now())
                except DatabaseError as exc:
                    # A busy database (SQLite "database is locked" while the task writes)
                    # costs one beat, not the thread: the next beat stamps the operation,
                    # else it would be taken for dead a minute later.
                    log.warning("operation %s heartbeat skipped: %s", self.op.uuid, exc)
        finally:
            connections.close_all()

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(5)
        return False


WORKER_LOST = "The worker running this operation stopped; it may be retried."


def on_worker_lost(task: Callable, handler: Callable[..., None]) -> None:
    """Say what ``task``'s objects become when its worker dies mid-way: ``handler(op,
    **op.args)`` runs when the dead operation is failed. A task that leaves a row "pending"
    while it works must turn it failed there, or the row claims progress nobody makes."""
    task.on_worker_lost = handler


def fail_dead(op: Operation) -> None:
    """Fail an operation whose worker stopped heartbeating, free its lock, and let its task
    fail what it was working on (``on_worker_lost``)."""
    OperationLogLine.objects.create(
        operation=op,
        level=OperationLogLine.Level.ERROR,
        message="The worker running this stopped responding.",
    )
    op.state, op.finished_at = Operation.State.FAILED, timezone.now()
    op.error = WORKER_LOST
    op.save()
    rollups.count_finished(op)
    OperationLock.objects.filter(operation=op).delete()
    try:
        handler = getattr(import_string(op.task), "on_worker_lost", None)
        if handler is not None:
            handler(op, **op.args)
    except Exception:  # noqa: BLE001 - the operation is failed whatever its target does
        log.exception("operation %s (%s): marking its target failed failed", op.uuid, op.kind)
    events.operation_changed(op)
    target = op.target()
    if target is not None:
        events.changed(target)


class LockHolder:
    """Serialise operations that share a lock key (one server, one hypervisor ...).

    A lock whose holder finished, or whose worker stopped heartbeating, is taken over."""

    def __init__(self, op: Operation, ctx: OperationContext) -> None:
        self.op, self.ctx = op, ctx

    def __enter__(self):
        if not self.op.lock_key:
            return self
        deadline = time.monotonic() + settings.Q_CLUSTER["timeout"]
        told = False
        while True:
            try:
                with transaction.atomic():
                    OperationLock.objects.create(key=self.op.lock_key, operation=self.op)
                return self
            except IntegrityError:
                holder = (
                    OperationLock.objects.filter(key=self.op.lock_key)
                    .select_related("operation")
                    .first()
                )
                if holder and (holder.operation.is_finished or holder.operation.heartbeat_stale):
                    if not holder.operation.is_finished:
                        fail_dead(holder.operation)
                    OperationLock.objects.filter(
                        key=holder.key, operation=holder.operation
                    ).delete()
                    continue
                if not told and holder:
                    self.ctx.log(f"Waiting for {holder.operation} to finish on {self.op.lock_key}.")
                    told = True
                self.ctx.check_cancelled()
                if (
                    self.op.worker
                    and not Operation.objects.filter(pk=self.op.pk, worker=self.op.worker).exists()
                ):
                    raise ClaimLost() from None  # given back while it waited: stop waiting
                if time.monotonic() > deadline:
                    raise OperationError(f"Timed out waiting for {self.op.lock_key}.") from None
                time.sleep(LOCK_POLL)

    def __exit__(self, *exc):
        if self.op.lock_key:
            OperationLock.objects.filter(key=self.op.lock_key, operation=self.op).delete()
        return False
