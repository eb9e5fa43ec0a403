"""Live events: every change has a sequence number, a socket replays from the sequence its
page was rendered with, each changed row is rendered alone, nothing is missed or doubled.

The same tests run embedded (the relay tails the database into the in-memory layer) and, with
REDIS_URL set, through Redis.
"""

import asyncio
import json
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.http import QueryDict

from core import events
from core.live import REPLAY_MAX
from core.live_views import OperationListLive
from core.models import LiveEvent, Operation
from core.operations import execute_operation, start_operation
from core.relay import Tail
from core.tasks import prune_live_events
from tests import support
from tests.conftest import in_thread, login, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
db = sync_to_async


def start(owner, task="tests.support.steps", **kw):
    return start_operation(kind="test.run", task=task, owner=owner, requested_by=owner, **kw)


async def connect(path, client):
    from panel.asgi import application

    cookie = f"sessionid={client.cookies['sessionid'].value}"
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


async def receive_until(comm, predicate, timeout=10.0) -> list[dict]:
    got: list[dict] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        try:
            raw = await comm.receive_from(timeout=max(0.1, end - loop.time()))
        except TimeoutError:
            break
        got.append(json.loads(raw))
        if predicate(got):
            return got
    raise AssertionError(f"did not receive the expected messages; got {got!r}")


def is_ready(msgs) -> bool:
    return msgs[-1].get("ready") is True or msgs[-1].get("type") == "ready"


async def open_ready(path, client):
    comm, ok, code = await connect(path, client)
    assert ok, code
    return comm, await receive_until(comm, is_ready)


def rows(msgs) -> dict[str, dict]:
    """The last fragment sent for each element id."""
    out = {}
    for msg in msgs:
        for row in msg.get("rows", []):
            out[row["id"]] = row
    return out


class TestReplay:
    async def test_what_happened_before_connect_is_replayed_once(self, customer):
        client = await db(login)(customer)
        since = await db(events.current_seq)()
        op = await db(start)(customer, args={"count": 3})
        await db(execute_operation)(op.pk)  # the whole run ends before the socket opens
        comm, msgs = await open_ready(
            f"/ws/operations/{op.uuid}/?format=json&since={since}&line=0", client
        )
        changed = [m for m in msgs if m["type"] == "changed"]
        seqs = [m["seq"] for m in changed]
        assert seqs == sorted(seqs) and seqs[0] > since and len(set(seqs)) == len(seqs)
        assert changed[0]["data"]["state"] == "queued"
        assert changed[-1]["data"]["state"] == "succeeded" and changed[-1]["data"]["finished"]
        lines = [m["message"] for m in msgs if m["type"] == "log"]
        assert lines == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
        assert await comm.receive_nothing(timeout=0.5)  # the relay/Redis adds no duplicate
        await comm.disconnect()

    async def test_detail_opened_mid_run_gets_every_line_exactly_once(self, customer):
        support.gate.clear()
        client = await db(login)(customer)
        op = await db(start)(customer, task="tests.support.chatter")
        worker = in_thread(execute_operation, op.pk)
        try:
            await db(wait_until)(lambda: op.lines.count() == 50)
            # The page was rendered when 25 lines existed; 25 more came before it connected.
            shown = await db(lambda: op.lines.order_by("id")[24].pk)()
            since = await db(events.current_seq)()
            comm, msgs = await open_ready(
                f"/ws/operations/{op.uuid}/?format=json&since={since}&line={shown}", client
            )
            support.gate.set()
            msgs += await receive_until(
                comm, lambda m: any(x.get("message") == "line 100" for x in m)
            )
        finally:
            support.gate.set()
            worker.join(10)
        lines = [m["message"] for m in msgs if m["type"] == "log"]
        assert lines == [f"line {i}" for i in range(26, 101)]
        await comm.disconnect()

    async def test_lines_written_while_connecting_arrive_once_in_order(self, customer):
        client = await db(login)(customer)
        op = await db(start)(
            customer, task="tests.support.chatter", args={"before": 300, "after": 0, "pause": False}
        )
        since = await db(events.current_seq)()
        worker = in_thread(execute_operation, op.pk)  # races the connect below
        comm, ok, _ = await connect(f"/ws/live/operations/{op.uuid}/?since={since}&line=0", client)
        assert ok
        msgs = await receive_until(
            comm, lambda m: any("line 300<" in a["html"] for x in m for a in x.get("append", []))
        )
        worker.join(10)
        html = [a["html"] for m in msgs for a in m.get("append", [])]
        assert [h.split("</span> ", 1)[1].split("<")[0] for h in html] == [
            f"line {i}" for i in range(1, 301)
        ]
        assert msgs[-1]["line"] == await db(lambda: op.lines.order_by("id").last().pk)()
        await comm.disconnect()

    async def test_too_far_behind_the_page_refetches_once(self, admin_user):
        client = await db(login)(admin_user)
        await db(LiveEvent.objects.bulk_create)(
            [LiveEvent(topic="core.operation", key=f"{i:032x}") for i in range(REPLAY_MAX + 1)]
        )
        comm, ok, _ = await connect("/ws/live/operations/?since=0", client)
        assert ok and json.loads(await comm.receive_from()) == {"reload": True}
        await comm.disconnect()

    async def test_pruned_events_make_the_page_refetch(self, admin_user):
        from datetime import timedelta

        from django.utils import timezone

        client = await db(login)(admin_user)
        old = timezone.now() - timedelta(days=1)
        KEY = "a" * 32  # noqa: N806
        first, second, newest = [
            (await db(LiveEvent.objects.create)(topic="core.operation", key=KEY, created_at=old)).pk
            for _ in range(3)
        ]
        assert await db(prune_live_events)() == 2  # the newest always stays
        comm, ok, _ = await connect(f"/ws/live/operations/?since={first}", client)
        assert ok and json.loads(await comm.receive_from()) == {"reload": True}
        await comm.disconnect()
        comm, _ = await open_ready(f"/ws/live/operations/?since={second}", client)  # none lost
        await comm.disconnect()


class TestRows:
    async def test_fast_operation_appears_in_an_open_list(self, admin_user, customer):
        """queued -> running -> failed inside one relay tick: the row still appears, once."""
        client = await db(login)(admin_user)
        since = await db(events.current_seq)()
        comm, _ = await open_ready(f"/ws/live/operations/?since={since}", client)
        op = await db(start)(customer, task="tests.support.boom")
        await db(execute_operation)(op.pk)
        row_id = f"op-{op.uuid.hex}-row"
        msgs = await receive_until(
            comm, lambda m: "Failed" in rows(m).get(row_id, {}).get("html", "")
        )
        row = rows(msgs)[row_id]
        assert row["insert"] == "op-rows" and row["html"].startswith("<tr")
        assert not any(m.get("reload") for m in msgs)
        assert all(m["seq"] > since for m in msgs)
        await comm.disconnect()

    @pytest.mark.parametrize(
        "page, inserted",
        [
            ("state=failed", {"failed"}),
            ("page=2", set()),
            ("q=test.run", {"failed", "succeeded"}),
            ("q=nomatch", set()),
        ],
    )
    async def test_filters_and_page_decide_insertion(self, customer, page, inserted):
        client = await db(login)(customer)
        since = await db(events.current_seq)()
        comm, _ = await open_ready(f"/ws/live/operations/?since={since}&page={quote(page)}", client)
        ok = await db(start)(customer)
        bad = await db(start)(customer, task="tests.support.boom")
        await db(execute_operation)(ok.pk)
        await db(execute_operation)(bad.pk)
        want = {f"op-{ok.uuid.hex}-row": "succeeded", f"op-{bad.uuid.hex}-row": "failed"}
        msgs = await receive_until(
            comm,
            lambda m: all(
                f'data-state="{state}"' in rows(m).get(rid, {}).get("html", "")
                for rid, state in want.items()
            ),
        )
        got = {want[rid] for rid, row in rows(msgs).items() if row["insert"] == "op-rows"}
        assert got == inserted
        await comm.disconnect()

    async def test_visibility(self, customer, reseller, mallory):
        since = await db(events.current_seq)()
        r_comm, _ = await open_ready(
            f"/ws/operations/?format=json&since={since}", await db(login)(reseller)
        )
        m_comm, _ = await open_ready(
            f"/ws/live/operations/?since={since}", await db(login)(mallory)
        )
        op = await db(start)(customer)
        await db(execute_operation)(op.pk)
        got = await receive_until(r_comm, lambda m: m[-1]["data"].get("finished") is True)
        assert {m["key"] for m in got} == {op.uuid.hex}
        assert await m_comm.receive_nothing(timeout=1.0)
        await r_comm.disconnect()
        await m_comm.disconnect()

    async def test_server_row_updates_when_an_operation_on_it_ends(self, reseller):
        from servers.models import Server

        server = await db(Server.objects.create)(name="s1", address="10.0.0.1", owner=reseller)
        client = await db(login)(reseller)
        since = await db(events.current_seq)()
        comm, _ = await open_ready(f"/ws/live/servers/?since={since}", client)
        op = await db(start_operation)(
            kind="server.test_connection", task="tests.support.steps", owner=reseller, target=server
        )
        await db(Server.objects.filter(pk=server.pk).update)(status="online")
        await db(execute_operation)(op.pk)
        row_id = f"srv-{server.uuid.hex}-row"
        msgs = await receive_until(comm, lambda m: row_id in rows(m))
        assert "Online" in rows(msgs)[row_id]["html"] and rows(msgs)[row_id]["insert"] == ""
        await comm.disconnect()

    async def test_a_new_server_makes_open_lists_refetch_and_a_deleted_one_leaves(
        self, reseller, mallory, admin_user
    ):
        from servers import services

        client = await db(login)(reseller)
        outsider = await db(login)(mallory)
        since = await db(events.current_seq)()
        comm, _ = await open_ready(f"/ws/live/servers/?since={since}", client)
        other, _ = await open_ready(f"/ws/live/servers/?since={since}", outsider)
        server = await db(services.do_create_server)(
            actor=admin_user,
            data={"name": "new-one", "address": "10.0.0.9", "owner": reseller},
        )
        row_id = f"srv-{server.uuid.hex}-row"
        msgs = await receive_until(comm, lambda m: row_id in rows(m))
        assert rows(msgs)[row_id]["refetch"] is True  # sorted by name: the page re-fetches
        assert await other.receive_nothing(timeout=0.5)  # not someone else's server
        await db(services.do_delete_server)(server, actor=admin_user)
        gone = await receive_until(comm, lambda m: any(row_id in x.get("remove", []) for x in m))
        assert gone
        await comm.disconnect()
        await other.disconnect()

    async def test_detail_status_and_actions_follow_the_state(self, customer):
        client = await db(login)(customer)
        op = await db(start)(customer, task="tests.support.boom")
        since = await db(events.current_seq)()
        comm, _ = await open_ready(f"/ws/live/operations/{op.uuid}/?since={since}", client)
        await db(execute_operation)(op.pk)
        badge = f"op-{op.uuid.hex}-state"
        msgs = await receive_until(
            comm, lambda m: 'data-finished="true"' in rows(m).get(badge, {}).get("html", "")
        )
        assert 'data-retryable="true"' in rows(msgs)[badge]["html"]
        assert "disk full on /var" in rows(msgs)[f"op-{op.uuid.hex}-status"]["html"]
        await comm.disconnect()

    async def test_out_of_reach_and_unverified_are_refused(self, customer, mallory, admin_user):
        op = await db(start)(customer)
        comm, ok, code = await connect(f"/ws/live/operations/{op.uuid}/", await db(login)(mallory))
        assert not ok and code == 4404
        unverified = await db(login)(admin_user, verified=False)
        comm, ok, code = await connect("/ws/live/operations/", unverified)
        assert not ok and code == 4401


def test_a_tail_comes_back_for_ids_committed_late(admin_user):
    """Ids are taken at insert and seen at commit: 3 may be read before 2."""
    LiveEvent.objects.create(id=1, topic="core.operation", key="1")
    tail = Tail(LiveEvent)
    LiveEvent.objects.create(id=3, topic="core.operation", key="3")
    assert [e.pk for e in tail.read()] == [3] and set(tail.holes) == {2}
    LiveEvent.objects.create(id=2, topic="core.operation", key="2")
    assert [e.pk for e in tail.read()] == [2] and not tail.holes
    assert tail.read() == []


@pytest.mark.parametrize("count", [2, 20])
def test_a_batch_of_rows_costs_the_same_queries(count, admin_user, customer):
    ops = [start(customer) for _ in range(count)]
    view = OperationListLive(admin_user, "", QueryDict("state=queued"))
    keys = {"core.operation": {op.uuid.hex for op in ops}}
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        fragments, removed = view.fragments(keys)
    assert len(fragments) == count and not removed
    assert len(queries) == 2  # the rows, and which of them match the page's filters


def test_events_are_written_after_commit_with_owner_and_reseller(customer, reseller):
    op = start(customer)
    event = LiveEvent.objects.get(key=op.uuid.hex)
    assert (event.topic, event.owner_id, event.reseller_id) == (
        "core.operation",
        customer.pk,
        reseller.pk,
    )
    assert event.data["state"] == "queued"
    assert Operation.objects.count() == 1
