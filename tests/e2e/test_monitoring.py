"""Monitoring in Chromium: the rule form shows the fields of the chosen kind, and a firing
alert appears on an open alert list without a reload."""

import re
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

    def test_dashboard_card_and_server_chart_follow_new_samples(self):
        from monitoring.collector import collect_round

        admin = make_user("charts@example.com", "admin")
        device = add_totp(admin)
        server = Server.objects.create(
            name="here", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin
        )
        collect_round()  # a first sample, so rates and the card have values
        card = f"#mon-{server.uuid.hex}-card"
        self.start_browser()
        page = self.open_signed_in(admin, device, "/")
        page.wait_for_function(
            "() => document.querySelector('[data-live]').dataset.liveState == 'ready'"
        )
        # Mark the card: a live update replaces the element, so the mark goes.
        page.eval_on_selector(card, "el => el.dataset.seen = 'before'")
        call_in_thread(collect_round)
        expect(page.locator(f"{card}[data-seen]")).to_have_count(0, timeout=10000)
        expect(page.locator(card)).to_contain_text("Online")

        page.goto(f"{self.live_server_url}{server.get_absolute_url()}")
        chart = page.locator("[data-testid=metrics-chart]")
        expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]"), timeout=10000)
        # A new round's sample reaches the chart over the socket (added to its point).
        call_in_thread(collect_round)
        newest = call_in_thread(lambda: Sample.objects.filter(server=server).latest("at").at)
        expect(chart).to_have_attribute(
            "data-last-at", re.compile(rf"^{int(newest.timestamp())}"), timeout=10000
        )
        assert int(chart.get_attribute("data-points")) >= 1
        page.screenshot(path=str(SHOTS / "server-chart-live.png"), full_page=True)
