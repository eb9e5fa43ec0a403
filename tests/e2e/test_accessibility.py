"""Every portal page, light and dark, has no serious or critical WCAG 2.1 A/AA violation as
axe-core (run in Chromium) finds them: contrast, names, labels, landmarks, focusable scroll
regions."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from core.models import Operation, OperationLogLine
from core.operations import execute_operation, start_operation
from servers.models import Server
from tests.conftest import add_totp, call_in_thread, make_user
from tests.e2e.browser import SHOTS, LiveBrowser, axe_violations

# Records what the page's strict CSP blocked (checked before axe, which is injected, runs).
CSP_WATCH = """window.__cspBlocked = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspBlocked.push(
  [e.violatedDirective, e.sourceFile, e.lineNumber, e.sample]));"""


@pytest.mark.e2e
class Accessibility(LiveBrowser):
    def pages(self, admin) -> list[str]:
        server = Server.objects.create(
            name="web-1",
            address="10.0.0.9",
            owner=admin,
            status="online",
            last_seen_at=timezone.now(),
            location="Berlin",
            facts={
                "pretty_name": "Debian 12",
                "kernel": "6.1",
                "cpu_count": 2,
                "memory_bytes": 2 << 30,
                "php_versions": ["8.2"],
                "services": {"nginx": True, "mariadb": False},
                "disks": [{"mount": "/", "used": 5 << 30, "size": 20 << 30}],
            },
        )
        failed = call_in_thread(
            start_operation,
            kind="server.apply",
            task="tests.support.boom",
            owner=admin,
            requested_by=admin,
            target=server,
        )
        call_in_thread(execute_operation, failed.pk)
        OperationLogLine.objects.create(operation=failed, level="warning", message="careful")
        running = call_in_thread(
            start_operation,
            kind="server.test_connection",
            task="tests.support.steps",
            owner=admin,
            requested_by=admin,
        )
        Operation.objects.filter(pk=running.pk).update(state="running", progress=40)
        from vps.models import Hypervisor, IpPool, VpsPlan

        hv = Hypervisor.objects.create(
            server=server, uri="test:///default", cpus=8, memory_mib=8192
        )
        pool = IpPool.objects.create(
            name="v4",
            hypervisor=hv,
            network="203.0.113.0/24",
            gateway="203.0.113.1",
            first="203.0.113.2",
            last="203.0.113.9",
        )
        VpsPlan.objects.create(name="Small")
        from hooks.models import Delivery, Event, Webhook

        hook = Webhook.objects.create(
            owner=admin, name="erp", url="https://hooks.example.com/", events=["alert.fired"]
        )
        event = Event.objects.create(type="webhook.test", source="test:a11y", owner_id=admin.pk)
        Delivery.objects.create(webhook=hook, event=event, state="failed", response_status=500)
        return [
            "/",
            "/operations/",
            "/operations/?state=cancelled",
            f"/operations/{failed.uuid}/",
            f"/operations/{running.uuid}/",
            "/servers/",
            "/servers/add/",
            f"/servers/{server.uuid}/",
            f"/servers/{server.uuid}/edit/",
            "/websites/",
            "/dns/",
            "/vps/",
            "/vps/hypervisors/",
            f"/vps/hypervisors/{hv.uuid}/",
            "/vps/plans/",
            "/vps/plans/new/",
            "/vps/images/",
            "/vps/pools/",
            f"/vps/pools/{pool.uuid}/",
            "/monitoring/",
            "/hooks/",
            "/hooks/new/",
            f"/hooks/{hook.uuid}/",
            "/account/",
            "/account/security/",
            "/account/tokens/",
            "/account/activity/",
            "/admin/",
            "/admin/core/operation/",
            f"/admin/servers/server/{server.pk}/change/",
        ]

    def test_every_portal_page_in_both_themes(self):
        admin = make_user("a11y@example.com", "admin")
        device = add_totp(admin)
        customer = make_user("a11y-customer@example.com", "customer")
        paths = self.pages(admin)
        self.start_browser()
        found: dict[str, list[str]] = {}
        login_page = self.browser.new_page()
        login_page.goto(f"{self.live_server_url}/accounts/login/")
        for theme in ("light", "dark"):
            login_page.evaluate(f"() => localStorage.setItem('uhp-theme', '{theme}')")
            login_page.reload()
            found[f"{theme} /accounts/login/"] = axe_violations(login_page)
        page = self.open_signed_in(admin, device, "/")
        page.add_init_script(CSP_WATCH)
        blocked: dict[str, list] = {}
        for theme in ("light", "dark"):
            page.evaluate(f"() => localStorage.setItem('uhp-theme', '{theme}')")
            for path in paths:
                page.goto(f"{self.live_server_url}{path}")
                assert page.evaluate("() => document.documentElement.dataset.theme") == theme
                blocked[path] = page.evaluate("() => window.__cspBlocked")  # before axe runs
                found[f"{theme} {path}"] = axe_violations(page)
            page.screenshot(path=str(SHOTS / f"a11y-{theme}-last.png"), full_page=True)
        other = self.browser.new_context()
        customer_page = other.new_page()
        customer_page.goto(f"{self.live_server_url}/accounts/login/")
        self.sign_in_without_second_factor(customer_page, customer)
        for theme in ("light", "dark"):
            customer_page.evaluate(f"() => localStorage.setItem('uhp-theme', '{theme}')")
            for path in ("/", "/admin/"):
                customer_page.goto(f"{self.live_server_url}{path}")
                found[f"{theme} customer {path}"] = axe_violations(customer_page)
        for path in (f"/admin/accounts/user/{admin.pk}/change/", "/admin/core/operation/?q=web"):
            page.goto(f"{self.live_server_url}{path}")
            blocked[path] = page.evaluate("() => window.__cspBlocked")
        blocked = {path: found for path, found in blocked.items() if found}
        assert not blocked, blocked  # the admin and the portal run under the strict policy
        failing = {page: v for page, v in found.items() if v}
        report = "\n".join(f"{p}\n  " + "\n  ".join(v) for p, v in failing.items())
        assert not failing, f"{len(failing)} of {len(found)} pages fail:\n{report}"

    def test_phone_layout(self):
        """At 390 px nothing is wider than the screen, the State column is on screen and
        the menu opens over a backdrop that closes it."""
        admin = make_user("phone@example.com", "admin")
        device = add_totp(admin)
        paths = [p for p in self.pages(admin) if not p.startswith("/admin/")]
        self.start_browser()
        page = self.open_signed_in(admin, device, "/", width=390, height=844)
        too_wide = {}
        for path in paths:
            page.goto(f"{self.live_server_url}{path}")
            width = page.evaluate("() => document.documentElement.scrollWidth")
            if width > 390:
                too_wide[path] = width
        assert not too_wide, too_wide

        page.goto(f"{self.live_server_url}/operations/")
        state = page.locator("#op-rows tr").first.locator("td[id$=-state] .badge")
        box = state.bounding_box()
        assert box and box["x"] + box["width"] <= 390, box
        page.goto(f"{self.live_server_url}/")
        for row in page.locator("#recent-ops > li").all():
            title = row.locator("a").first.bounding_box()
            badge = row.locator(".badge").first.bounding_box()
            assert title["x"] + title["width"] <= badge["x"], (title, badge)
        page.screenshot(path=str(SHOTS / "phone-dashboard.png"), full_page=True)

        backdrop = page.locator("[data-testid=sidebar-backdrop]")
        expect(backdrop).to_be_hidden()
        page.click("button[aria-label='Open menu']")
        expect(backdrop).to_be_visible()
        page.screenshot(path=str(SHOTS / "phone-menu.png"))
        backdrop.click(position={"x": 370, "y": 400})
        expect(backdrop).to_be_hidden()
        page.click("button[aria-label='Open menu']")
        page.keyboard.press("Escape")
        expect(backdrop).to_be_hidden()
