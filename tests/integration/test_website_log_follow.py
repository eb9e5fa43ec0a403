"""Following a site's logs from its page, against a private sshd and nginx on loopback: the
"Follow logs" button starts an Operation that reads ``tail -F`` over SSH; the last lines,
then each line nginx appends, become operation log lines (what the page's live socket
sends), escaped when rendered; leaving the page cancels it and the remote tail ends; it
also ends by itself at its time limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from core.models import Operation, OperationLogLine
from core.operations import execute_operation
from core.templatetags.panel_tags import log_line
from tests.conftest import in_thread, login, make_user, wait_until
from tests.integration.web_stack import WebStack
from websites import services
from websites.models import Website

pytestmark = [pytest.mark.integration]
HOST = "127.0.0.22"
EMAIL = "uhpfolw@example.com"  # account name "uhpfolw": a real Linux user in the tests
NAME = "uhpfolw"
DOMAIN = "follow.logs.test"


@pytest.fixture(scope="module")
def stack():
    web = WebStack(HOST, NAME)
    yield web
    web.stop()


def _get(stack, path: str, agent: str = "panel-test") -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{stack.nginx.port}{path}",
        headers={"Host": DOMAIN, "User-Agent": agent},
    )
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(req, timeout=5).read()  # noqa: S310 - loopback


def _lines(op: Operation) -> list[str]:
    return list(OperationLogLine.objects.filter(operation=op).values_list("message", flat=True))


async def _page_receives(path: str, client, act, marker: str) -> dict:
    """Open the page's live socket, ``act``, and return the appended fragment that holds
    ``marker`` (nothing is polled: the line comes over the socket)."""
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
    assert connected, code
    try:
        loop = asyncio.get_running_loop()
        acted, end = False, loop.time() + 20
        while loop.time() < end:
            try:
                msg = json.loads(await comm.receive_from(timeout=max(0.1, end - loop.time())))
            except TimeoutError:
                break
            if msg.get("ready") and not acted:
                await sync_to_async(act)()
                acted = True
            for item in msg.get("append", []):
                if marker in item["html"]:
                    return item
        raise AssertionError("the appended line never reached the page's socket")
    finally:
        await comm.disconnect()


def _tails_running(path: str) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tail") and path.encode() in argv:
            return True
    return False


@pytest.mark.django_db(transaction=True)
def test_follow_streams_appended_lines_escaped_and_stops_with_the_page(
    stack, admin_user, q_sync, monkeypatch
):
    customer = make_user(EMAIL, "customer")
    assert customer.account_name == NAME
    server = stack.server(admin_user)
    site = services.do_create_website(
        actor=admin_user,
        data={"domain": DOMAIN, "server": server, "owner": customer, "kind": "static"},
    )  # runs inline (q_sync) once committed
    site = Website.objects.get(pk=site.pk)
    assert site.status == "active", site.status_message
    access_log = str(stack.homes / NAME / "logs" / f"{DOMAIN}.access.log")
    _get(stack, "/before-follow")
    wait_until(lambda: "before-follow" in Path(access_log).read_text())

    # The page's button (htmx): the operation is queued, the page gets its live log root.
    queued: list[Operation] = []
    monkeypatch.setattr("core.operations._enqueue", queued.append)
    page = login(customer).post(f"/websites/{site.uuid}/logs/follow/", HTTP_HX_REQUEST="true")
    assert page.status_code == 200
    (op,) = queued
    html = page.content.decode()
    since = int(re.search(r'data-live-since="(\d+)"', html).group(1))
    assert f'data-live="/ws/live/operations/{op.uuid}/"' in html
    stop_url = reverse("operation-cancel", args=[op.uuid])
    assert f'data-follow-stop="{stop_url}"' in html and 'id="op-log"' in html
    worker = in_thread(execute_operation, op.pk)

    wait_until(lambda: any("before-follow" in m for m in _lines(op)))  # the last lines
    marker = f"live-{secrets.token_hex(4)}"
    # The page's socket: the line nginx appends arrives as an escaped fragment for #op-log.
    appended = async_to_sync(_page_receives)(
        f"/ws/live/operations/{op.uuid}/?since={since}&line=0",
        login(customer),
        lambda: _get(stack, f"/{marker}", agent="<b>bold</b><script>x()</script>"),
        marker,
    )
    assert appended["target"] == "op-log"
    assert "&lt;script&gt;x()&lt;/script&gt;" in appended["html"]
    assert "<script>" not in appended["html"]
    wait_until(lambda: any(marker in m for m in _lines(op)))
    line = OperationLogLine.objects.get(operation=op, message__contains=marker)
    assert "<script>x()</script>" in line.message  # stored as nginx wrote it
    rendered = log_line(line)
    assert "<script>" not in rendered and "&lt;script&gt;x()&lt;/script&gt;" in rendered
    assert _tails_running(access_log)

    # Leaving the page (its pagehide request): the operation ends, and so does tail.
    resp = login(customer).post(stop_url)
    assert resp.status_code in (200, 302)
    worker.join(15)
    assert not worker.is_alive()
    op.refresh_from_db()
    assert op.state == "cancelled", (op.state, op.error)
    wait_until(lambda: not _tails_running(access_log))


@pytest.mark.django_db(transaction=True)
def test_follow_ends_by_itself_at_its_time_limit(stack, admin_user, q_sync, monkeypatch):
    customer = make_user("uhpfolw2@example.com", "customer")
    server = stack.server(admin_user, name="web-follow-2")
    site = Website.objects.create(domain="limit.logs.test", server=server, owner=customer)
    from websites.models import SystemAccount

    SystemAccount.objects.create(server=server, user=customer, name=NAME)
    queued: list[Operation] = []
    monkeypatch.setattr("core.operations._enqueue", queued.append)
    op = services.start_follow_logs(site, actor=customer, seconds=2)
    worker = in_thread(execute_operation, op.pk)
    worker.join(20)
    assert not worker.is_alive()
    op.refresh_from_db()
    assert op.state == "succeeded", (op.state, op.error)
    assert op.message.startswith("Followed the logs of limit.logs.test")


@pytest.mark.django_db(transaction=True)
def test_a_dropped_connection_fails_the_follow_and_ends_tail(
    stack, admin_user, q_sync, monkeypatch
):
    """The SSH connection breaks while following: the operation fails and says so (the page
    stops getting lines rather than showing a follow that is not live), and the remote tail
    does not outlive the session."""
    from servers import connection
    from websites.models import SystemAccount

    customer = make_user("uhpfolw3@example.com", "customer")
    server = stack.server(admin_user, name="web-follow-3")
    site = Website.objects.create(domain="drop.logs.test", server=server, owner=customer)
    SystemAccount.objects.create(server=server, user=customer, name=NAME)
    access_log = str(stack.homes / NAME / "logs" / "drop.logs.test.access.log")
    queued: list[Operation] = []
    monkeypatch.setattr("core.operations._enqueue", queued.append)
    op = services.start_follow_logs(site, actor=customer)
    worker = in_thread(execute_operation, op.pk)
    wait_until(lambda: _tails_running(access_log))
    connection.open_transport(server).drop()  # the worker's pooled connection
    worker.join(20)
    assert not worker.is_alive()
    op.refresh_from_db()
    assert op.state == "failed" and "connection" in op.error, (op.state, op.error)
    wait_until(lambda: not _tails_running(access_log))
