"""A dead worker is recognised within a minute: its operation fails and its lock is freed."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import Operation, OperationLock
from core.operations import (
    Heartbeat,
    LockHolder,
    OperationContext,
    on_worker_lost,
    start_operation,
)
from core.tasks import reap_stale_operations
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db


def running(owner, *, beat_ago: float, lock_key: str = "server:1") -> Operation:
    op = start_operation(kind="t", task="tests.support.steps", owner=owner, lock_key=lock_key)
    at = timezone.now() - timedelta(seconds=beat_ago)
    Operation.objects.filter(pk=op.pk).update(state="running", started_at=at, heartbeat_at=at)
    if lock_key:
        OperationLock.objects.create(key=lock_key, operation=op)
    op.refresh_from_db()
    return op


def test_lock_of_a_silent_worker_is_taken_over_at_once(customer, settings):
    settings.PANEL_OPERATION_STALE_SECONDS = 60
    dead = running(customer, beat_ago=90)
    new = start_operation(kind="t", task="tests.support.steps", owner=customer, lock_key="server:1")
    started = time.monotonic()
    with LockHolder(new, OperationContext(new)):
        assert OperationLock.objects.get(key="server:1").operation_id == new.pk
    assert time.monotonic() - started < 5  # not the 30-minute task timeout
    dead.refresh_from_db()
    assert dead.state == "failed" and "stopped" in dead.error


def test_a_heartbeating_holder_keeps_its_lock(customer, settings):
    settings.PANEL_OPERATION_STALE_SECONDS = 60
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 1}
    alive = running(customer, beat_ago=5)
    new = start_operation(kind="t", task="tests.support.steps", owner=customer, lock_key="server:1")
    from core.operations import OperationError

    with (
        pytest.raises(OperationError, match="Timed out waiting"),
        LockHolder(new, OperationContext(new)),
    ):
        pass
    alive.refresh_from_db()
    assert alive.state == "running"


def test_reaper_fails_silent_operations_within_a_minute(customer, settings):
    settings.PANEL_OPERATION_STALE_SECONDS = 60
    dead = running(customer, beat_ago=61)
    alive = running(customer, beat_ago=2, lock_key="server:2")
    assert reap_stale_operations() == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.state == "failed" and alive.state == "running"
    assert list(OperationLock.objects.values_list("key", flat=True)) == ["server:2"]


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_stamps_the_operation(customer, settings):
    settings.PANEL_HEARTBEAT_SECONDS = 0.05
    op = running(customer, beat_ago=300, lock_key="")

    def stamped() -> bool:
        op.refresh_from_db()
        return timezone.now() - op.heartbeat_at < timedelta(seconds=2)

    with Heartbeat(op):
        wait_until(stamped, timeout=5)
    assert not op.heartbeat_stale


@pytest.mark.django_db(transaction=True)
def test_a_busy_database_costs_a_beat_not_the_heartbeat(customer, settings, monkeypatch):
    """SQLite answers "database is locked" while the task itself writes: the thread goes on
    beating (it stopped for good, and the operation was later taken for dead)."""
    from django.db import OperationalError
    from django.db.models.query import QuerySet

    settings.PANEL_HEARTBEAT_SECONDS = 0.05
    op = running(customer, beat_ago=300, lock_key="")
    real_update, refused = QuerySet.update, []

    def busy_at_first(qs, **fields):
        if "heartbeat_at" in fields and len(refused) < 3:
            refused.append(fields)
            raise OperationalError("database is locked")
        return real_update(qs, **fields)

    monkeypatch.setattr(QuerySet, "update", busy_at_first)

    def stamped() -> bool:
        op.refresh_from_db()
        return timezone.now() - op.heartbeat_at < timedelta(seconds=2)

    with Heartbeat(op):
        wait_until(stamped, timeout=5)
    assert len(refused) == 3 and not op.heartbeat_stale


lost: list[tuple[str, dict]] = []


def task_with_rows(ctx, row_id: int) -> str:
    return "done"


def _rows_lost(op, row_id: int) -> None:
    lost.append((op.uuid.hex, {"row_id": row_id}))


on_worker_lost(task_with_rows, _rows_lost)


@pytest.mark.parametrize("noticed_by", ["reaper", "lock"])
def test_a_dead_workers_task_fails_what_it_was_working_on(customer, settings, noticed_by):
    """Whoever notices the dead worker (the reaper, or the next operation wanting its lock)
    runs the task's on_worker_lost with the operation's arguments, once."""
    settings.PANEL_OPERATION_STALE_SECONDS = 60
    lost.clear()
    dead = start_operation(
        kind="t",
        task="tests.unit.test_operation_heartbeat.task_with_rows",
        owner=customer,
        lock_key="server:9",
        args={"row_id": 7},
    )
    at = timezone.now() - timedelta(seconds=90)
    Operation.objects.filter(pk=dead.pk).update(state="running", started_at=at, heartbeat_at=at)
    OperationLock.objects.create(key="server:9", operation=dead)
    if noticed_by == "reaper":
        assert reap_stale_operations() == 1
    else:
        new = start_operation(
            kind="t", task="tests.support.steps", owner=customer, lock_key="server:9"
        )
        with LockHolder(new, OperationContext(new)):
            pass
    assert lost == [(dead.uuid.hex, {"row_id": 7})]
    assert reap_stale_operations() == 0 and len(lost) == 1
