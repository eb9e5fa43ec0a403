"""Claims (core/workers.py): an operation pulled by a worker that dies before starting it is
requeued, never lost and never run twice. The end-to-end proof with real qclusters is in
tests/integration/test_scale_out.py (PostgreSQL + Redis) and test_worker_recovery.py (SQLite,
ORM broker)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.signing import SignedPackage

from core import workers
from core.models import Operation, OperationLock, Worker
from core.operations import execute_operation, start_operation

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued(monkeypatch):
    """What went to the broker (instead of the broker)."""
    sent: list[int] = []
    monkeypatch.setattr("core.operations._enqueue", lambda op: sent.append(op.pk))
    return sent


def queued(owner, **kw) -> Operation:
    return start_operation(kind="t", task="tests.support.steps", owner=owner, **kw)


def claimed_by(op: Operation, name: str, ago: float) -> None:
    Operation.objects.filter(pk=op.pk).update(
        worker=name, claimed_at=timezone.now() - timedelta(seconds=ago)
    )


def payload(op_id: int, func: str = workers.EXECUTE) -> bytes:
    return SignedPackage.dumps({"func": func, "args": (op_id,), "kwargs": {}})


def test_the_pusher_claims_the_operations_it_pulls_and_nothing_else(
    customer, enqueued, monkeypatch
):
    monkeypatch.setenv(workers.ENV, "host:1:aa")
    mine, other, done = queued(customer), queued(customer), queued(customer)
    claimed_by(other, "host:2:bb", 0)
    Operation.objects.filter(pk=done.pk).update(state="succeeded")
    pulled = [payload(mine.pk), payload(other.pk), payload(done.pk), payload(1, "x.y")]
    assert workers.claim_pulled([*pulled, b"garbage"]) == 1
    states = dict(Operation.objects.values_list("pk", "worker"))
    assert states == {mine.pk: "host:1:aa", other.pk: "host:2:bb", done.pk: ""}


def test_lost_claims_are_requeued_live_and_fresh_ones_kept(
    customer, enqueued, settings, django_capture_on_commit_callbacks
):
    settings.PANEL_OPERATION_STALE_SECONDS = 5
    Worker.objects.create(name="live", pid=1)
    Worker.objects.create(name="dead", pid=2, beat_at=timezone.now() - timedelta(seconds=30))
    of_live, of_dead, of_gone, just_pulled = (queued(customer) for _ in range(4))
    claimed_by(of_live, "live", 60)
    claimed_by(of_dead, "dead", 60)
    claimed_by(of_gone, "never-registered", 60)
    claimed_by(just_pulled, "starting", 1)  # a worker registers before it pulls: grace
    running = queued(customer)
    claimed_by(running, "dead", 60)
    Operation.objects.filter(pk=running.pk).update(state="running")
    with django_capture_on_commit_callbacks(execute=True):
        assert workers.requeue_lost() == 2
    assert sorted(enqueued) == sorted([of_dead.pk, of_gone.pk])
    of_dead.refresh_from_db()
    assert of_dead.worker == "" and of_dead.state == "queued"
    assert of_dead.lines.filter(message__contains="queued again").exists()
    assert Operation.objects.get(pk=of_live.pk).worker == "live"
    assert Operation.objects.get(pk=running.pk).worker == "dead"  # failed by the reaper, not rerun
    assert workers.requeue_lost() == 0


def test_a_task_delivered_twice_runs_once(customer, enqueued, monkeypatch):
    monkeypatch.setenv(workers.ENV, "w1")
    op = queued(customer)
    assert execute_operation(op.pk) == "succeeded"
    assert execute_operation(op.pk) == "succeeded"  # the duplicate finds it finished
    other = queued(customer)
    claimed_by(other, "w2", 0)
    assert execute_operation(other.pk) == "elsewhere"
    assert Operation.objects.get(pk=other.pk).state == "queued"


def test_a_worker_that_lost_its_claim_while_waiting_does_not_run_it(
    customer, enqueued, monkeypatch, settings
):
    """It was waiting for the server's lock when the others took it for dead and requeued
    it: it must not start it as well."""
    monkeypatch.setenv(workers.ENV, "slow")
    holder = queued(customer, lock_key="server:1")
    Operation.objects.filter(pk=holder.pk).update(state="running", heartbeat_at=timezone.now())
    OperationLock.objects.create(key="server:1", operation=holder)
    op = queued(customer, lock_key="server:1")

    def requeue_while_waiting(*args):
        Operation.objects.filter(pk=op.pk).update(worker="", claimed_at=None)  # requeued
        Operation.objects.filter(pk=holder.pk).update(state="succeeded")

    monkeypatch.setattr("core.operations.time.sleep", requeue_while_waiting)
    assert execute_operation(op.pk) == "requeued"
    op.refresh_from_db()
    assert op.state == "queued" and op.worker == "" and not OperationLock.objects.exists()


def test_a_stopping_worker_gives_back_what_it_has_not_started(
    customer, enqueued, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setenv(workers.ENV, "stopping")
    life = workers.Liveness("stopping")
    life.register()
    taken = [queued(customer) for _ in range(2)]
    for op in taken:
        claimed_by(op, "stopping", 0)
    with django_capture_on_commit_callbacks(execute=True):
        assert life.stopping() == 2
    assert sorted(enqueued) == sorted(op.pk for op in taken)
    # One its pusher pulled after that: its task process does not run it either.
    late = queued(customer)
    enqueued.clear()
    assert execute_operation(late.pk) == "requeued"
    assert Operation.objects.get(pk=late.pk).state == "queued" and enqueued == []
    claimed_by(late, "stopping", 0)
    with django_capture_on_commit_callbacks(execute=True):
        assert execute_operation(late.pk) == "requeued"
    assert enqueued == [late.pk]
    life.close()
    assert not Worker.objects.filter(name="stopping").exists()


def test_a_waiting_worker_stops_waiting_once_its_claim_is_given_back(
    customer, enqueued, monkeypatch
):
    """A stopping worker gave back an operation its task process waits a lock for: the task
    process stops waiting at once (the worker can exit; another runs the operation)."""
    monkeypatch.setenv(workers.ENV, "stopping")
    holder = queued(customer, lock_key="server:1")
    Operation.objects.filter(pk=holder.pk).update(state="running", heartbeat_at=timezone.now())
    OperationLock.objects.create(key="server:1", operation=holder)
    op = queued(customer, lock_key="server:1")
    polls: list[int] = []

    def give_back(*args):
        polls.append(1)
        Operation.objects.filter(pk=op.pk).update(worker="", claimed_at=None)

    monkeypatch.setattr("core.operations.time.sleep", give_back)
    assert execute_operation(op.pk) == "requeued"
    assert len(polls) == 1  # the next poll noticed
    assert Operation.objects.get(pk=holder.pk).state == "running"
    assert OperationLock.objects.get(key="server:1").operation_id == holder.pk
