import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.models import User
from core.models import Operation, OperationLock
from core.operations import (
    OperationError,
    cancel_operation,
    execute_operation,
    retry_operation,
    start_operation,
)
from tests import support
from tests.conftest import in_thread, login, wait_until
from tests.unit.test_live import connect as _connect  # noqa: F401 - tests/integration/test_terminal.py

pytestmark = pytest.mark.django_db


def start(owner, task="tests.support.steps", **kw):
    return start_operation(kind="test.run", task=task, owner=owner, requested_by=owner, **kw)


class TestLifecycle:
    def test_success_records_progress_and_log(self, customer, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks() as callbacks:
            op = start(customer, args={"count": 3})
        # Enqueued (and announced to live pages) only on commit.
        assert op.state == "queued" and len(callbacks) == 2
        assert execute_operation(op.pk) == "succeeded"
        op.refresh_from_db()
        assert op.progress == 100 and op.message == "3 steps done"
        assert [line.message for line in op.lines.all()] == [
            "step 1 of 3",
            "step 2 of 3",
            "step 3 of 3",
        ]
        assert op.started_at and op.finished_at

    def test_failure_keeps_error_text(self, customer):
        op = start(customer, task="tests.support.boom")
        assert execute_operation(op.pk) == "failed"
        op.refresh_from_db()
        assert op.error == "disk full on /var"
        assert op.lines.last().level == "error"

    def test_unknown_task_refused_at_start(self, customer):
        with pytest.raises(ImportError):
            start(customer, task="tests.support.nope")
        assert not Operation.objects.exists()

    def test_cancel_queued_never_runs(self, customer):
        op = start(customer)
        cancel_operation(op, actor=customer)
        assert execute_operation(op.pk) == "cancelled"
        op.refresh_from_db()
        assert op.lines.count() == 0 and op.state == "cancelled"
        with pytest.raises(OperationError):
            cancel_operation(op, actor=customer)

    def test_retry_creates_new_operation(self, customer):
        op = start(customer, task="tests.support.boom")
        with pytest.raises(OperationError):
            retry_operation(op, actor=customer)
        execute_operation(op.pk)
        op.refresh_from_db()
        new = retry_operation(op, actor=customer)
        assert new.pk != op.pk and new.retry_of == op and new.state == "queued"

    def test_worker_runs_it_through_django_q(
        self, customer, q_sync, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            op = start(customer)
        op.refresh_from_db()
        assert op.state == "succeeded"


@pytest.mark.django_db(transaction=True)
class TestSerialisation:
    def test_same_lock_key_runs_one_at_a_time(self, customer):
        support.gate.clear()
        first = start(customer, task="tests.support.wait_for_gate", lock_key="server:1")
        second = start(customer, task="tests.support.steps", lock_key="server:1")
        free = start(customer, task="tests.support.steps", lock_key="server:2")
        t1 = in_thread(execute_operation, first.pk)
        wait_until(lambda: Operation.objects.get(pk=first.pk).state == "running")
        t2 = in_thread(execute_operation, second.pk)
        wait_until(lambda: second.lines.filter(message__startswith="Waiting for").exists())
        assert Operation.objects.get(pk=second.pk).state == "queued"
        assert execute_operation(free.pk) == "succeeded"  # other key not blocked
        support.gate.set()
        t1.join(10)
        t2.join(10)
        first.refresh_from_db()
        second.refresh_from_db()
        assert first.state == second.state == "succeeded"
        assert second.started_at >= first.finished_at
        assert not OperationLock.objects.exists()

    def test_cancel_running(self, customer):
        support.gate.clear()
        op = start(customer, task="tests.support.wait_for_gate")
        t = in_thread(execute_operation, op.pk)
        wait_until(lambda: Operation.objects.get(pk=op.pk).state == "running")
        cancel_operation(op, actor=customer)
        t.join(10)
        op.refresh_from_db()
        assert op.state == "cancelled"

    def test_stale_lock_of_finished_operation_is_taken_over(self, customer):
        dead = start(customer)
        Operation.objects.filter(pk=dead.pk).update(state="failed")
        OperationLock.objects.create(key="server:9", operation=dead)
        op = start(customer, lock_key="server:9")
        assert execute_operation(op.pk) == "succeeded"


class TestPortal:
    def test_list_detail_cancel_retry(self, customer):
        op = start(customer, task="tests.support.boom")
        client = login(customer)
        resp = client.get("/operations/")
        assert resp.status_code == 200 and f"op-{op.uuid.hex}-row".encode() in resp.content
        assert b'data-live="/ws/live/operations/"' in resp.content
        resp = client.get("/operations/", HTTP_HX_REQUEST="true")
        assert b"<html" not in resp.content and b"operations-table" in resp.content
        execute_operation(op.pk)
        resp = client.get(f"/operations/{op.uuid}/")
        assert b"disk full on /var" in resp.content and b"Retry" in resp.content
        assert b'data-retryable="true"' in resp.content  # the Retry form shows, Cancel hides
        resp = client.post(f"/operations/{op.uuid}/retry/")
        assert resp.status_code == 302 and Operation.objects.count() == 2

    def test_self_check_is_staff_only(
        self, customer, admin_user, q_sync, django_capture_on_commit_callbacks
    ):
        assert login(customer).post("/operations/self-check/").status_code == 404
        with django_capture_on_commit_callbacks(execute=True):
            resp = login(admin_user).post("/operations/self-check/")
        op = Operation.objects.get(kind="panel.self_check")
        assert resp.status_code == 302 and op.state == "succeeded", op.error
        assert op.lines.filter(message__contains="Channel layer").exists()


def test_operations_of_a_dead_worker_are_failed_and_unlocked(customer, settings):
    from datetime import timedelta

    from django.utils import timezone

    from core.tasks import reap_stale_operations

    dead = start(customer, lock_key="server:7")
    alive = start(customer)
    Operation.objects.filter(pk__in=[dead.pk, alive.pk]).update(state="running")
    OperationLock.objects.create(key="server:7", operation=dead)
    old = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["timeout"] + 600)
    Operation.objects.filter(pk=dead.pk).update(updated_at=old)
    assert reap_stale_operations() == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.state == "failed" and "worker" in dead.error and alive.state == "running"
    assert not OperationLock.objects.exists()


@pytest.mark.parametrize(
    "kind, title",
    [
        ("server.test_connection", "Test connection"),
        ("panel.self_check", "Self-check"),
        ("website.create", "Create website"),
        ("dns.publish_zone", "Publish zone"),
        ("odd", "Odd"),
    ],
)
def test_operations_have_human_titles(kind, title):
    assert Operation(kind=kind).title == title


async def _raw_connect(path: str, headers: list[tuple[bytes, bytes]], client=("10.9.8.7", 5000)):
    from panel.asgi import application

    comm = WebsocketCommunicator(application, path, headers=headers)
    comm.scope["client"] = client
    return comm, *(await comm.connect(timeout=5))


@pytest.mark.django_db(transaction=True)
class TestWebsocketEdges:
    """Finding 13: exact Origin, no error on unknown paths, the real client address."""

    async def _cookie(self, user):
        client = await sync_to_async(login)(user)
        return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())

    @pytest.mark.parametrize(
        "origin",
        [b"http://testserver:9999", b"https://testserver", b"http://evil.example", b"null", b""],
    )
    async def test_origin_must_match_exactly(self, customer, origin):
        cookie = await self._cookie(customer)
        headers = [cookie, (b"host", b"testserver"), (b"origin", origin)]
        _, ok, code = await _raw_connect("/ws/operations/", headers)
        assert not ok and code == 4403
        headers[-1] = (b"origin", b"http://testserver")
        comm, ok, _ = await _raw_connect("/ws/operations/", headers)
        assert ok
        await comm.disconnect()

    async def test_unknown_path_is_refused_quietly(self, customer):
        cookie = await self._cookie(customer)
        headers = [cookie, (b"host", b"testserver"), (b"origin", b"http://testserver")]
        _, ok, code = await _raw_connect("/ws/nothing-here/", headers)
        assert not ok and code == 4404

    async def test_client_address_comes_from_trusted_proxy_only(self, customer, settings):
        settings.TRUSTED_PROXIES = ["10.9.8.0/24"]
        await sync_to_async(User.objects.filter(pk=customer.pk).update)(
            ip_allowlist="203.0.113.0/24"
        )
        cookie = await self._cookie(customer)
        base = [cookie, (b"host", b"testserver"), (b"origin", b"http://testserver")]
        forwarded = [*base, (b"x-forwarded-for", b"203.0.113.7")]
        comm, ok, _ = await _raw_connect("/ws/operations/", forwarded)
        assert ok  # behind the trusted proxy, the client is 203.0.113.7: allowed
        await comm.disconnect()
        _, ok, code = await _raw_connect("/ws/operations/", forwarded, client=("198.51.100.1", 1))
        assert not ok and code == 4401  # the same header from anyone else is not believed
        garbage = [*base, (b"x-forwarded-for", b"garbage")]
        _, ok, code = await _raw_connect("/ws/operations/", garbage)
        assert not ok and code == 4401


def test_an_expected_failure_logs_one_line_and_a_bug_its_traceback(customer, caplog):
    boom = start(customer, task="tests.support.boom")
    with caplog.at_level("WARNING", logger="core.operations"):
        execute_operation(boom.pk)
    records = [r for r in caplog.records if r.name == "core.operations"]
    assert len(records) == 1 and records[0].exc_info is None
    assert "disk full on /var" in records[0].getMessage()
    caplog.clear()
    bug = start(customer, task="tests.support.bug")
    with caplog.at_level("WARNING", logger="core.operations"):
        execute_operation(bug.pk)
    records = [r for r in caplog.records if r.name == "core.operations"]
    assert len(records) == 1 and records[0].exc_info is not None
