"""A VPS's page in Chromium: its chart loads the series from the API and adds a new
round's sample from the socket, without a reload (libvirt's test driver)."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import add_totp, call_in_thread, make_user
from tests.e2e.browser import SHOTS, LiveBrowser
from tests.integration.libvirt import make_test_hypervisor, need_libvirt
from tests.integration.test_vps_stats import _conn, _held, _remove, _running_vps
from vps.models import VpsSample
from vps.stats import collect_round


@pytest.mark.e2e
class VpsStatsJourney(LiveBrowser):
    def test_vps_chart_follows_new_rounds(self):
        need_libvirt()
        _conn()
        admin = make_user("vpscharts@example.com", "admin")
        device = add_totp(admin)
        hv = make_test_hypervisor(admin)
        vps = _running_vps(hv, admin)
        try:
            collect_round([hv])  # a first sample, so the chart has a point
            self.start_browser()
            page = self.open_signed_in(admin, device, vps.get_absolute_url())
            chart = page.locator("[data-testid=vps-metrics-chart]")
            expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]"), timeout=10000)
            call_in_thread(collect_round, [hv])
            newest = call_in_thread(lambda: VpsSample.objects.filter(vps=vps).latest("at").at)
            expect(chart).to_have_attribute(
                "data-last-at", re.compile(rf"^{int(newest.timestamp())}"), timeout=10000
            )
            page.screenshot(path=str(SHOTS / "vps-chart-live.png"), full_page=True)
        finally:
            _remove(vps)
            while _held:  # the test driver's state goes with its last connection
                _held.pop().close()
