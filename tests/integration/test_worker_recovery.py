"""A real qcluster on the embedded layout's broker (django-q2's ORM queue, in the test
database: SQLite in one CI half, PostgreSQL in the other) killed with SIGKILL while it holds
operations it took off the queue but could not start: the next worker requeues them and runs
them; its running operation is failed. Nothing stays queued. (Redis: test_scale_out.py.)"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_q.conf import Conf

from core.models import Operation, Worker
from core.operations import start_operation
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture
def orm_broker(monkeypatch):
    """This process enqueues where the workers (started without REDIS_URL) read: the ORM."""
    monkeypatch.setattr(Conf, "BROKER_CLASS", "core.brokers.ClaimingORM")
    monkeypatch.setattr(Conf, "ORM", "default")
    monkeypatch.setattr(Conf, "SYNC", False)


@pytest.fixture
def workers(tmp_path, orm_broker):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    env.update(
        DATABASE_URL=database_url(),
        SECRET_KEY=settings.SECRET_KEY,
        PANEL_ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        PANEL_AUDIT_KEYS=",".join(settings.AUDIT_KEYS),
        PANEL_WORKERS="1",
        PANEL_HEARTBEAT_SECONDS="1",
        PANEL_OPERATION_STALE_SECONDS="3",
        PANEL_LOG_LEVEL="WARNING",
    )
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        n = len(procs)
        pidfile = tmp_path / f"worker-{n}.pid"
        log = open(tmp_path / f"worker-{n}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster", "--pidfile", str(pidfile)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        procs.append(proc)
        wait_until(lambda: pidfile.exists() or proc.poll() is not None, 60)
        assert proc.poll() is None, (tmp_path / f"worker-{n}.log").read_text()[-3000:]
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # task processes it left behind


def test_a_killed_worker_loses_none_of_the_operations_it_had_taken(customer, workers, tmp_path):
    gate = tmp_path / "closed"
    gate.touch()

    def hold() -> Operation:
        return start_operation(
            kind="t", task="tests.support.hold_file", owner=customer, args={"path": str(gate)}
        )

    first = workers()
    running = hold()
    wait_until(lambda: Operation.objects.get(pk=running.pk).state == "running", 30)
    name = Operation.objects.get(pk=running.pk).worker
    waiting = [hold() for _ in range(3)]
    # Its pusher takes what its only (busy) task process cannot run yet.
    wait_until(
        lambda: Operation.objects.filter(pk__in=[o.pk for o in waiting], worker=name).exists(),
        30,
    )
    taken = list(
        Operation.objects.filter(pk__in=[o.pk for o in waiting], worker=name).values_list(
            "pk", flat=True
        )
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    gate.unlink()
    started = time.monotonic()
    second = workers()  # requeues at start, and every few beats
    ids = [o.pk for o in waiting]
    wait_until(
        lambda: (
            not Operation.objects.filter(pk__in=[running.pk, *ids])
            .exclude(state__in=Operation.FINISHED)
            .exists()
        ),
        60,
    )
    assert time.monotonic() - started < 45
    states = dict(Operation.objects.filter(pk__in=ids).values_list("pk", "state"))
    assert set(states.values()) == {"succeeded"}, states
    dead = Operation.objects.get(pk=running.pk)
    assert dead.state == "failed" and "worker" in dead.error
    for pk in taken:
        assert Operation.objects.get(pk=pk).lines.filter(message__contains="queued again")
    assert not Operation.objects.filter(state="queued").exists()
    # SIGTERM: it stops cleanly, and its row goes.
    os.kill(second.pid, signal.SIGTERM)
    assert second.wait(30) == 0
    assert not Worker.objects.filter(pid=second.pid).exists()
