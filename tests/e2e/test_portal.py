"""Drive the portal in Debian's Chromium: sign in with a second factor, watch an operation
progress live over the websocket, toggle and keep the theme, check a phone layout."""

import re

import pytest
from django_otp.oath import totp
from playwright.sync_api import expect

from core.operations import execute_operation, start_operation
from tests import support
from tests.conftest import PASSWORD, add_totp, call_in_thread, in_thread, make_user
from tests.e2e.browser import SHOTS, LiveBrowser


@pytest.mark.e2e
class PortalJourney(LiveBrowser):
    def test_login_2fa_operations_theme(self):
        admin = make_user("ops@example.com", "admin")
        device = add_totp(admin)
        done = start_operation(
            kind="website.create", task="tests.support.steps", owner=admin, requested_by=admin
        )
        execute_operation(done.pk)
        support.gate.clear()
        live = start_operation(
            kind="server.apply",
            task="tests.support.wait_for_gate",
            owner=admin,
            requested_by=admin,
            args={"seconds": 30},
        )

        self.start_browser()
        page = self.browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{self.live_server_url}/operations/")
        assert "/accounts/login/" in page.url
        page.screenshot(path=str(SHOTS / "login.png"))
        page.fill("input[name=login]", admin.email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/2fa/verify/**")
        page.screenshot(path=str(SHOTS / "2fa-verify.png"))
        code = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
        page.fill("input[name=code]", f"{code:06d}")
        page.click("form button.btn-primary")
        page.wait_for_url("**/operations/")
        table = page.locator("[data-testid=operations-table]")
        assert "Create website" in table.inner_text()
        assert "Apply configuration" in table.inner_text()

        # Live progress: the worker (this process) moves the operation; the page updates.
        state = page.locator(f"#op-{live.uuid.hex}-state")
        assert "Queued" in state.inner_text()
        worker = in_thread(execute_operation, live.pk)
        expect(state).to_contain_text("Running", timeout=10000)
        page.screenshot(path=str(SHOTS / "operations-running.png"))
        support.gate.set()
        worker.join(15)
        expect(state).to_contain_text("Succeeded", timeout=10000)
        expect(page.locator(f"#op-{live.uuid.hex}-progress")).to_have_attribute("value", "100")

        # A new operation shows up in the open list by itself.
        extra = call_in_thread(
            start_operation,
            kind="dns.publish",
            task="tests.support.steps",
            owner=admin,
            requested_by=admin,
        )
        expect(page.locator(f"#op-{extra.uuid.hex}-state")).to_contain_text("Queued", timeout=10000)

        # Theme toggle, remembered across a reload.
        html = page.locator("html")
        was_dark = "dark" in (html.get_attribute("class") or "")
        page.click("#theme-toggle")
        assert ("dark" in (html.get_attribute("class") or "")) != was_dark
        page.reload()
        assert ("dark" in (html.get_attribute("class") or "")) != was_dark
        if "dark" not in (html.get_attribute("class") or ""):
            page.click("#theme-toggle")
        page.screenshot(path=str(SHOTS / "operations-dark.png"), full_page=True)
        page.click("#theme-toggle")
        page.screenshot(path=str(SHOTS / "operations-light.png"), full_page=True)

        # Search as you type: a value set without key presses (pasted, or filled in by a
        # script as here) filters too (htmx listens for "input", not "keyup").
        page.fill("input[name=q]", "dns.publish")
        expect(table).not_to_contain_text("Create website", timeout=10000)
        expect(page.locator(f"#op-{extra.uuid.hex}-state")).to_be_visible()
        assert "q=dns.publish" in page.url

        # Detail page with the streamed log.
        page.goto(f"{self.live_server_url}/operations/{live.uuid}/")
        assert "holding" in page.locator("[data-testid=op-log]").inner_text()

        # The dashboard draws today's operations in its chart.
        page.goto(f"{self.live_server_url}/")
        expect(page.locator("[data-testid=ops-chart] title").last).to_contain_text("succeeded")
        page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

        # The API docs render offline (Swagger UI from the sidecar package) under the CSP.
        page.goto(f"{self.live_server_url}/api/docs/")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text(
            "Unified Hosting Panel API", timeout=15000
        )
        # Swagger UI renders the operations progressively (a long list): the first is there.
        expect(page.locator(".swagger-ui .opblock").first).to_contain_text(
            "/api/v1/", timeout=15000
        )
        page.screenshot(path=str(SHOTS / "api-docs.png"))

        # A phone: the sidebar is hidden until the menu button opens it.
        phone = self.browser.new_context(viewport={"width": 390, "height": 844})
        phone.add_cookies(page.context.cookies())
        mobile = phone.new_page()
        mobile.goto(f"{self.live_server_url}/")
        assert not mobile.locator("#sidebar").is_visible() or (
            mobile.locator("#sidebar").bounding_box()["x"] < 0
        )
        mobile.click("button[aria-label='Open menu']")
        mobile.wait_for_timeout(300)
        assert mobile.locator("#sidebar").bounding_box()["x"] >= 0
        mobile.screenshot(path=str(SHOTS / "dashboard-phone.png"))
        phone.close()

    def test_add_server_with_inline_validation(self):
        admin = make_user("ops2@example.com", "admin")
        device = add_totp(admin)
        self.start_browser()
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{self.live_server_url}/servers/add/")
        self.sign_in(page, admin, device)
        page.wait_for_url("**/servers/add/")
        page.fill("input[name=name]", "edge-1")
        page.fill("input[name=address]", "not a host!")
        page.locator("input[name=address]").blur()
        expect(page.locator("#server-fields")).to_contain_text(
            "neither an IP address", timeout=5000
        )
        page.screenshot(path=str(SHOTS / "server-form-invalid.png"), full_page=True)
        # The form asks for what the answers need: a password only for password sign-in.
        expect(page.locator("input[name=password]")).to_have_count(0)
        page.select_option("select[name=auth_method]", "password")
        expect(page.locator("input[name=password]")).to_be_visible(timeout=5000)
        expect(page.locator("textarea[name=private_key]")).to_have_count(0)
        page.fill("input[name=password]", "typed before another change")
        # Fixing the address re-renders the fields (its error goes): the password stays.
        page.fill("input[name=address]", "127.0.0.9")
        page.locator("input[name=address]").blur()
        expect(page.locator("#server-fields")).not_to_contain_text(
            "neither an IP address", timeout=5000
        )
        expect(page.locator("input[name=password]")).to_have_value("typed before another change")
        page.select_option("select[name=auth_method]", "key")
        expect(page.locator("textarea[name=private_key]")).to_be_visible(timeout=5000)
        expect(page.locator("[name=status]")).to_have_count(0)
        page.click("button:has-text('Add server')")
        page.wait_for_url(re.compile(r"/servers/[0-9a-f-]{36}/$"))
        expect(page.locator("h1")).to_contain_text("edge-1")
        expect(page.locator("#pubkey")).to_contain_text("ssh-ed25519")
        page.screenshot(path=str(SHOTS / "server-detail.png"), full_page=True)


@pytest.fixture
def _class_sshd(request, sshd):
    request.instance.sshd = sshd


@pytest.mark.e2e
@pytest.mark.usefixtures("_class_sshd")
class TerminalJourney(LiveBrowser):
    """The web terminal in Chromium: xterm.js under the CSP, the ticket, a real shell."""

    def test_terminal_runs_a_command(self):
        from servers.models import Server
        from tests.integration.conftest import SSH_HOST

        admin = make_user("ops3@example.com", "admin")
        device = add_totp(admin)
        server = Server.objects.create(
            name="term1",
            address=SSH_HOST,
            ssh_port=self.sshd.port,
            owner=admin,
            private_key=self.sshd.private_key,
        )
        self.start_browser()
        page = self.browser.new_page(viewport={"width": 1100, "height": 700})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{self.live_server_url}/servers/")
        self.sign_in(page, admin, device)
        page.wait_for_url("**/servers/")

        # The list updates itself when a connection test on the server finishes.
        from core.operations import execute_operation
        from servers.services import start_test_connection

        row = page.locator(f"#srv-{server.uuid.hex}-row")
        expect(row).to_contain_text("Not contacted yet")
        op = call_in_thread(start_test_connection, server, actor=admin)
        call_in_thread(execute_operation, op.pk)
        expect(row).to_contain_text("Online", timeout=10000)
        expect(row.locator("[data-testid=last-seen]")).not_to_contain_text("never")
        page.screenshot(path=str(SHOTS / "servers-live.png"))

        page.goto(f"{self.live_server_url}/servers/{server.uuid}/terminal/")
        expect(page.locator("[data-testid=term-status]")).to_contain_text(
            "connected", timeout=10000
        )
        page.locator("#terminal").click()
        page.keyboard.type("echo browser-$((20+22))\n")
        expect(page.locator("#terminal")).to_contain_text("browser-42", timeout=10000)
        page.screenshot(path=str(SHOTS / "terminal.png"))
        assert not [e for e in errors if "Content Security Policy" in e], errors
