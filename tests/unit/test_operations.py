import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

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
from tests.conftest import in_thread, login

pytestmark = pytest.mark.django_db


def start(owner, task="tests.support.steps", **kw):
    return start_operation(kind="test.run", task=task, owner=owner, requested_by=owner, **kw)


class TestLifecycle:
    def test_success_records_progress_and_log(self, customer, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks() as callbacks:
            op = start(customer, args={"count": 3})
        assert op.state == "queued" and len(callbacks) == 1  # enqueued only on commit
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
        _wait(lambda: Operation.objects.get(pk=first.pk).state == "running")
        t2 = in_thread(execute_operation, second.pk)
        _wait(lambda: second.lines.filter(message__startswith="Waiting for").exists())
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
        _wait(lambda: Operation.objects.get(pk=op.pk).state == "running")
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


def _wait(cond, timeout=10.0):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class TestPortal:
    def test_list_detail_cancel_retry(self, customer):
        op = start(customer, task="tests.support.boom")
        client = login(customer)
        resp = client.get("/operations/")
        assert resp.status_code == 200 and op.kind.encode() in resp.content
        assert b'ws-connect="/ws/operations/"' in resp.content
        resp = client.get("/operations/", HTTP_HX_REQUEST="true")
        assert b"<html" not in resp.content and b"operations-table" in resp.content
        execute_operation(op.pk)
        resp = client.get(f"/operations/{op.uuid}/")
        assert b"disk full on /var" in resp.content and b"Retry" in resp.content
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


async def _connect(path, user_client: Client):
    from panel.asgi import application

    cookie = f"sessionid={user_client.cookies['sessionid'].value}"
    comm = WebsocketCommunicator(
        application,
        path,
        headers=[
            (b"cookie", cookie.encode()),
            (b"origin", b"http://testserver"),
            (b"host", b"testserver"),
        ],
    )
    connected, code = await comm.connect(timeout=5)
    return comm, connected, code


async def _receive_until(comm, predicate, timeout=10.0):
    got = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        try:
            msg = await comm.receive_from(timeout=max(0.1, end - loop.time()))
        except TimeoutError:
            break
        got.append(msg)
        if predicate(got):
            return got
    raise AssertionError(f"did not receive the expected messages; got {got!r}")


@pytest.mark.django_db(transaction=True)
class TestLiveProgress:
    """Progress and log lines reach the browser over the websocket, pushed, not polled.

    Under REDIS_URL the worker publishes to Redis directly; embedded, the relay carries them.
    """

    async def test_detail_stream_html_and_json(self, customer):
        client = await sync_to_async(login)(customer)
        op = await sync_to_async(start)(customer, args={"count": 2})
        comm, ok, _ = await _connect(f"/ws/operations/{op.uuid}/", client)
        assert ok
        jcomm, ok, _ = await _connect(f"/ws/operations/{op.uuid}/?format=json", client)
        assert ok
        await asyncio.sleep(0.4)  # relay's first look sets its starting point
        await sync_to_async(execute_operation)(op.pk)
        html = await _receive_until(comm, lambda m: any("succeeded" in x for x in m))
        text = "".join(html)
        assert f'id="op-{op.uuid.hex}-progress"' in text and "hx-swap-oob" in text
        assert "step 1 of 2" in text and 'id="op-log"' in text
        events_ = [
            json.loads(x)
            for x in await _receive_until(jcomm, lambda m: any('"finished": true' in x for x in m))
        ]
        assert {e["type"] for e in events_} == {"operation.update", "operation.log"}
        assert events_[-1]["progress"] == 100
        await comm.disconnect()
        await jcomm.disconnect()

    async def test_list_stream_follows_visibility(self, customer, reseller, mallory):
        op = await sync_to_async(start)(customer)
        rc = await sync_to_async(login)(reseller)
        mc = await sync_to_async(login)(mallory)
        r_comm, ok, _ = await _connect("/ws/operations/?format=json", rc)
        assert ok
        m_comm, ok, _ = await _connect("/ws/operations/?format=json", mc)
        assert ok
        await asyncio.sleep(0.4)
        await sync_to_async(execute_operation)(op.pk)
        got = await _receive_until(r_comm, lambda m: any('"succeeded"' in x for x in m))
        html_comm, ok, _ = await _connect("/ws/operations/", rc)
        assert ok
        await asyncio.sleep(0.4)
        new = await sync_to_async(start)(customer)
        text = "".join(await _receive_until(html_comm, lambda m: any("ops-new" in x for x in m)))
        assert f'data-new="{new.uuid.hex}"' in text and "-percent" not in text
        await html_comm.disconnect()
        assert all(json.loads(x)["uuid"] == op.uuid.hex for x in got)
        assert await m_comm.receive_nothing(timeout=1.0)
        await r_comm.disconnect()
        await m_comm.disconnect()

    async def test_out_of_reach_and_unverified_are_refused(self, customer, mallory, admin_user):
        op = await sync_to_async(start)(customer)
        mc = await sync_to_async(login)(mallory)
        comm, ok, code = await _connect(f"/ws/operations/{op.uuid}/", mc)
        assert not ok and code == 4404
        unverified = await sync_to_async(login)(admin_user, verified=False)
        comm, ok, code = await _connect("/ws/operations/", unverified)
        assert not ok and code == 4401


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


@pytest.mark.django_db(transaction=True)
async def test_server_list_rows_refresh_when_a_server_operation_ends(reseller, mallory):
    from servers.models import Server

    server = await sync_to_async(Server.objects.create)(
        name="s1", address="10.0.0.1", owner=reseller
    )
    client = await sync_to_async(login)(reseller)
    comm, ok, _ = await _connect("/ws/operations/?view=servers", client)
    assert ok
    await asyncio.sleep(0.4)
    op = await sync_to_async(start_operation)(
        kind="server.test_connection", task="tests.support.steps", owner=reseller, target=server
    )
    await sync_to_async(execute_operation)(op.pk)
    got = "".join(await _receive_until(comm, lambda m: any("srv-refresh" in x for x in m)))
    assert f'hx-get="/servers/{server.uuid}/row/"' in got
    assert f'hx-target="#srv-{server.uuid}-row"' in got
    await comm.disconnect()
    row = await sync_to_async(client.get)(f"/servers/{server.uuid}/row/")
    assert row.status_code == 200 and f'id="srv-{server.uuid}-row"' in row.content.decode()
    other = await sync_to_async(login)(mallory)
    assert (await sync_to_async(other.get)(f"/servers/{server.uuid}/row/")).status_code == 404


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
