"""Which worker holds which operation, so that none is lost when a worker dies.

A qcluster's pusher takes tasks off the broker (Redis list, or the ORM queue) into a queue in
its own memory before a task process is free to run them; a cluster killed outright took
those with it. So every operation is *claimed*: the pusher stamps the operations it pulls
with its worker's name (``claim_pulled``), the task process claims it again atomically before
running it (``core.operations.execute_operation``), and each cluster stamps its row in
``Worker`` every few seconds (``Liveness``). An operation still queued whose worker stopped
stamping is put back on the queue (``requeue_lost``): nothing remote has been done for it
yet. One that was running is failed instead (``core.tasks.reap_stale_operations``): a
half-done remote step is never re-run blindly.

A worker told to stop (SIGTERM) gives back what it had not started (``release_claims``) and
finishes what it runs.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from core.models import Operation, OperationLogLine, Worker

log = logging.getLogger(__name__)
ENV = "PANEL_WORKER_ID"
EXECUTE = "core.operations.execute_operation"
_fallback = ""


def worker_id() -> str:
    """This process's worker name: set by qcluster for its task processes and pusher; any
    other process (sync mode, a shell) gets one of its own, which never heartbeats."""
    global _fallback
    if name := os.environ.get(ENV):
        return name
    if not _fallback:
        _fallback = new_worker_id()
    return _fallback


def new_worker_id() -> str:
    # The random part: a restarted worker that gets the same pid is another worker.
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


def stale_limit() -> timedelta:
    return timedelta(seconds=settings.PANEL_OPERATION_STALE_SECONDS)


def claim_pulled(payloads: list[bytes]) -> int:
    """In the pusher: claim the operations of the tasks just taken off the broker. Best effort:
    without a claim the task process claims it when it starts it."""
    from django_q.signing import BadSignature, SignedPackage

    ids = []
    for payload in payloads:
        try:
            task = SignedPackage.loads(payload)
        except (TypeError, BadSignature):
            continue  # the pusher reports it
        if task.get("func") == EXECUTE and task.get("args"):
            ids.append(task["args"][0])
    if not ids:
        return 0
    try:
        return Operation.objects.filter(pk__in=ids, state=Operation.State.QUEUED, worker="").update(
            worker=worker_id(), claimed_at=timezone.now()
        )
    except DatabaseError:
        log.warning("could not claim pulled operations %s", ids, exc_info=True)
        connections.close_all()  # a broken connection is reopened next time
        return 0


def stopping(name: str) -> bool:
    return Worker.objects.filter(name=name, stopping=True).exists()


def _requeue(op_ids: list[int], *, holder: str, why: str) -> int:
    """Take these queued operations back from ``holder`` (atomically: a task process that
    starts one meanwhile keeps it) and put each on the broker again."""
    from core import operations

    done = 0
    for op_id in op_ids:
        with transaction.atomic():
            taken = Operation.objects.filter(
                pk=op_id, state=Operation.State.QUEUED, worker=holder
            ).update(worker="", claimed_at=None)
            if not taken:
                continue
            OperationLogLine.objects.create(
                operation_id=op_id, level=OperationLogLine.Level.WARNING, message=why
            )
            op = Operation.objects.get(pk=op_id)
            transaction.on_commit(lambda op=op: operations._enqueue(op))
        done += 1
    return done


def release_claims(name: str) -> int:
    """A stopping worker gives back the operations it took but has not started."""
    ids = list(
        Operation.objects.filter(state=Operation.State.QUEUED, worker=name).values_list(
            "pk", flat=True
        )
    )
    return _requeue(ids, holder=name, why="Its worker is stopping: queued again for another.")


def requeue_lost() -> int:
    """Put back on the queue every operation still queued whose worker stopped heartbeating
    (killed with the tasks it had taken off the queue). Safe to run from several workers."""
    now = timezone.now()
    live = Worker.objects.filter(beat_at__gte=now - stale_limit()).values("name")
    lost = (
        Operation.objects.filter(state=Operation.State.QUEUED, claimed_at__lt=now - stale_limit())
        .exclude(worker="")
        .exclude(worker__in=live)
    )
    done = 0
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            # Two reapers at once: each takes the rows the other has not locked.
            lost = lost.select_for_update(skip_locked=True, of=("self",))
        for op_id, holder in lost.values_list("pk", "worker")[:500]:
            done += _requeue(
                [op_id],
                holder=holder,
                why="The worker that took this off the queue stopped before starting it: "
                "queued again.",
            )
    if done:
        log.warning("requeued %s operations of stopped workers", done)
    # Rows of workers gone for long are of no more use.
    Worker.objects.filter(beat_at__lt=now - 10 * stale_limit() - timedelta(hours=1)).delete()
    return done


class Liveness:
    """A qcluster's heartbeat (in a thread of its main process, which lives as long as any
    of its task processes): stamps its Worker row, and reaps lost and dead operations of
    other workers every few beats."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.every = max(0.2, float(settings.PANEL_HEARTBEAT_SECONDS or 10))
        self.reap_every = max(self.every, settings.PANEL_OPERATION_STALE_SECONDS / 2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="worker-liveness")

    def register(self) -> None:
        Worker.objects.update_or_create(
            name=self.name,
            defaults={"pid": os.getpid(), "beat_at": timezone.now(), "stopping": False},
        )

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        last_reap = 0.0
        clock = 0.0
        while True:
            try:
                if not Worker.objects.filter(name=self.name).update(beat_at=timezone.now()):
                    self.register()
                if clock - last_reap >= self.reap_every or last_reap == 0.0:
                    last_reap = clock or 1e-9
                    reap_all()
            except Exception:  # noqa: BLE001 - a database outage must not end the heartbeat
                log.warning("worker heartbeat failed", exc_info=True)
                connections.close_all()
            if self.stop.wait(self.every):
                break
            clock += self.every
        connections.close_all()

    def stopping(self) -> int:
        """SIGTERM: say so (this worker's task processes then start nothing more) and give
        back what was taken but not started."""
        Worker.objects.filter(name=self.name).update(stopping=True)
        return release_claims(self.name)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)
        Worker.objects.filter(name=self.name).delete()
        # Whatever a task process of ours claimed after the release goes back too.
        release_claims(self.name)


def reap_all() -> None:
    from core.tasks import reap_stale_operations

    requeue_lost()
    reap_stale_operations()
