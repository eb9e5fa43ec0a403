"""Monitoring in Chromium: the rule form shows the fields of the chosen kind, and a firing
alert appears on an open alert list without a reload."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from monitoring import services
from monitoring.alerts import evaluate_alerts
from monitoring.models import Sample
from servers.models import Server
from tests.conftest import add_totp, call_in_thread, make_user
from tests.e2e.browser import SHOTS, LiveBrowser


@pytest.mark.e2e
class MonitoringJourney(LiveBrowser):
    def test_rule_form_follows_the_kind_and_alerts_arrive_live(self):
        admin = make_user("watch@example.com", "admin")
        device = add_totp(admin)
        server = Server.objects.create(
            name="busy-1", address="10.9.0.3", owner=admin, status="online"
        )
        services.do_create_rule(
            actor=admin,
            data={
                "name": "CPU",
                "kind": "metric",
                "metric": "cpu",
                "comparison": ">",
                "threshold": 50,
            },
        )
        self.start_browser()
        page = self.open_signed_in(admin, device, "/monitoring/rules/new/")
        page.select_option("select[name=kind]", "certificate_expiring")
        expect(page.locator("input[name=days]")).to_be_visible()
        expect(page.locator("select[name=metric]")).to_be_hidden()
        expect(page.locator("select[name=scope]")).to_be_hidden()
        page.select_option("select[name=kind]", "metric")
        expect(page.locator("select[name=metric]")).to_be_visible()
        expect(page.locator("input[name=threshold]")).to_be_visible()
        expect(page.locator("select[name=scope]")).to_be_visible()
        expect(page.locator("input[name=days]")).to_be_hidden()
        page.screenshot(path=str(SHOTS / "alert-rule-form.png"), full_page=True)

        page.goto(f"{self.live_server_url}/monitoring/")
        expect(page.locator("[data-testid=alerts-table]")).not_to_contain_text("busy-1")
        page.wait_for_function(
            "() => document.querySelector('[data-live]').dataset.liveState == 'ready'"
        )

        def busy_now():
            now = timezone.now()
            Sample.objects.create(server=server, at=now - timedelta(seconds=1), values={"cpu": 97})
            return evaluate_alerts(now)

        call_in_thread(busy_now)
        expect(page.locator("[data-testid=alerts-table]")).to_contain_text("busy-1", timeout=10000)
        page.screenshot(path=str(SHOTS / "alerts-live.png"), full_page=True)
