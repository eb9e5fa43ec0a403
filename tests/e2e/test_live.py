"""Live pages in Chromium: nothing is missed, nothing doubled, nothing polled.

Workers are simulated by running operations in threads of this process; the page's Daphne is
another process, so every event crosses the real path (the relay reading the database when
embedded, Redis with REDIS_URL).
"""

import re

import pytest
from playwright.sync_api import expect

from accounts.services import do_create_token
from core.models import Operation
from core.operations import execute_operation, start_operation
from servers.models import Server
from tests import support
from tests.conftest import add_totp, call_in_thread, in_thread, make_user, wait_until
from tests.e2e.browser import SHOTS, LiveBrowser


def log_lines(page) -> list[str]:
    texts = page.locator("#op-log [data-line]").all_inner_texts()
    return [t.split(" ", 1)[1] for t in texts]


@pytest.mark.e2e
class LiveJourney(LiveBrowser):
    def test_fast_operation_started_from_the_api_appears_in_an_open_list(self):
        admin = make_user("live1@example.com", "admin")
        device = add_totp(admin)
        # Port 1 refuses at once: the operation goes queued -> running -> failed in a moment.
        server = Server.objects.create(name="fast", address="127.0.0.1", ssh_port=1, owner=admin)
        _, raw = call_in_thread(
            do_create_token, admin, actor=admin, data={"name": "e2e", "scope": "write"}
        )
        self.start_browser()
        page = self.open_signed_in(admin, device, "/operations/")
        refetches = []
        page.on("request", lambda r: refetches.append(r.url) if "/operations/" in r.url else None)
        expect(page.locator("[data-live-state=ready]")).to_have_count(1)

        reply = page.request.post(
            f"{self.live_server_url}/api/v1/servers/{server.uuid}/test-connection/",
            headers={"Authorization": f"Bearer {raw}"},
        )
        assert reply.status == 202, reply.text()
        op = Operation.objects.get(uuid=reply.json()["uuid"])
        call_in_thread(execute_operation, op.pk)
        row = page.locator(f"#op-{op.uuid.hex}-row")
        expect(row).to_contain_text("Failed", timeout=10000)
        expect(row).to_contain_text("Test connection")
        expect(page.locator("#op-rows > tr")).to_have_count(1)  # inserted once, on top
        assert refetches == [], refetches  # the row came over the socket, no list re-fetch
        page.screenshot(path=str(SHOTS / "live-fast-operation.png"))

    def chatty_operation(self, email: str, before: int, after: int):
        """An admin, its device, and an operation that logs ``before`` lines, waits for the
        gate, then logs ``after`` more."""
        admin = make_user(email, "admin")
        device = add_totp(admin)
        support.gate.clear()
        op = call_in_thread(
            start_operation,
            kind="server.apply",
            task="tests.support.chatter",
            owner=admin,
            requested_by=admin,
            args={"before": before, "after": after},
        )
        self.start_browser()
        return admin, device, op

    def test_detail_opened_mid_run_shows_every_line_exactly_once(self):
        admin, device, op = self.chatty_operation("live2@example.com", 60, 140)
        page = self.open_signed_in(admin, device, "/operations/")
        worker = in_thread(execute_operation, op.pk)
        try:
            wait_until(lambda: op.lines.count() == 60)
            page.goto(f"{self.live_server_url}/operations/{op.uuid}/")
            support.gate.set()  # the other 140 lines race the socket's connect
            expect(page.locator("#op-log [data-line]").last).to_have_text(
                re.compile(r"line 200$"), timeout=15000
            )
        finally:
            support.gate.set()
            worker.join(15)
        assert log_lines(page) == [f"line {i}" for i in range(1, 201)]
        expect(page.locator(f"#op-{op.uuid.hex}-state")).to_contain_text("Succeeded")
        page.screenshot(path=str(SHOTS / "live-log.png"))

    def test_detail_placeholder_and_cancel_follow_the_operation(self):
        admin, device, op = self.chatty_operation("live3@example.com", 0, 3)
        page = self.open_signed_in(admin, device, f"/operations/{op.uuid}/")
        expect(page.locator("#op-log")).to_contain_text("No output yet.")
        cancel = page.locator("[data-testid=cancel-form]")
        expect(cancel).to_be_visible()
        expect(page.locator("[data-testid=retry-form]")).to_be_hidden()
        worker = in_thread(execute_operation, op.pk)
        expect(page.locator(f"#op-{op.uuid.hex}-state")).to_contain_text("Running", timeout=10000)
        support.gate.set()
        worker.join(15)
        expect(page.locator(f"#op-{op.uuid.hex}-state")).to_contain_text("Succeeded", timeout=10000)
        expect(page.locator("#op-log [data-line]")).to_have_count(3)
        expect(page.locator("#op-log")).not_to_contain_text("No output yet.")
        expect(cancel).to_be_hidden()
        expect(page.locator("[data-testid=retry-form]")).to_be_hidden()  # succeeded: no retry
        expect(page.locator(f"#op-{op.uuid.hex}-percent")).to_have_text("100%")

    def test_health_answers_while_live_pages_are_open(self):
        """/healthz and the staff dashboard probe the channel layer; with sockets open on
        the same web process that probe must not wait on them (it hung with Redis)."""
        import urllib.error
        import urllib.request

        admin = make_user("live4@example.com", "admin")
        device = add_totp(admin)
        self.start_browser()
        page = self.open_signed_in(admin, device, "/operations/")
        expect(page.locator("[data-live-state=ready]")).to_have_count(1)
        try:
            answer = urllib.request.urlopen(f"{self.live_server_url}/healthz", timeout=5)
            status = answer.status
        except urllib.error.HTTPError as exc:  # 503: no worker runs in this test
            status = exc.code
        assert status in (200, 503)
        page.goto(f"{self.live_server_url}/", timeout=5000)
        expect(page.locator("[data-testid=panel-health]")).to_contain_text("Live updates")
