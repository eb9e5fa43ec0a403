"""A VPS's consoles in Chromium against a real qemu guest (tests/integration/libvirt.py):
xterm.js runs a command on the serial console, and noVNC (vendored, ES modules under the
CSP) passes the guest's VNC password challenge and shows its screen."""

import pytest
from playwright.sync_api import expect

from servers.models import Server
from tests.conftest import add_totp, make_user
from tests.e2e.browser import SHOTS, LiveBrowser, axe_violations
from tests.e2e.test_accessibility import CSP_WATCH
from tests.integration.libvirt import libvirtd, tiny_guest_files  # noqa: F401 - fixtures
from tests.integration.test_vps_console import _vps, guest  # noqa: F401 - fixture
from vps.models import Hypervisor


@pytest.fixture(scope="class")
def _class_guest(request, guest):  # noqa: F811
    request.cls.guest = guest


@pytest.mark.e2e
@pytest.mark.usefixtures("_class_guest")
class VpsConsoleJourney(LiveBrowser):
    def test_serial_console_and_vnc_screen(self):
        owner = make_user("console@example.com", "customer")
        device = add_totp(owner)
        admin = make_user("console-admin@example.com", "admin")
        server = Server.objects.create(
            name="kvm-e2e", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin
        )
        hv = Hypervisor.objects.create(
            server=server, uri=self.guest["uri"], storage_pool=self.guest["pool"], network=""
        )
        vps = _vps(owner, hv)
        self.start_browser()
        errors = []
        page = self.open_signed_in(owner, device, vps.get_absolute_url())
        page.add_init_script(CSP_WATCH)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        page.click("[data-testid=vps-console]")
        expect(page.locator("[data-testid=term-status]")).to_contain_text(
            "connected", timeout=15000
        )
        page.locator("#terminal").click()
        page.keyboard.type("echo browser-$((20+22))\n")
        expect(page.locator("#terminal")).to_contain_text("browser-42", timeout=15000)
        # About 300 KB (with the tty's CR before each LF), past the socket's window of
        # 256 KiB: it only all arrives when the page acknowledges what xterm.js has drawn.
        page.keyboard.type("seq 1 45000; echo seq-$((50+5))-done\n")
        expect(page.locator("#terminal")).to_contain_text("seq-55-done", timeout=60000)
        page.screenshot(path=str(SHOTS / "vps-serial-console.png"))
        assert page.evaluate("() => window.__cspBlocked") == []
        assert axe_violations(page) == []

        page.goto(f"{self.live_server_url}/vps/{vps.uuid}/vnc/")
        # "connected" comes after noVNC answered the VNC authentication with the password.
        expect(page.locator("[data-testid=vnc-status]")).to_contain_text("connected", timeout=20000)
        expect(page.locator("[data-testid=vnc-screen] canvas")).to_be_visible()
        # The first framebuffer update sizes the canvas to the guest's text mode (720x400).
        page.wait_for_function(
            "document.querySelector('[data-testid=vnc-screen] canvas').width >= 640"
        )
        page.screenshot(path=str(SHOTS / "vps-vnc.png"))
        assert page.evaluate("() => window.__cspBlocked") == []  # noVNC's modules too
        assert axe_violations(page) == []
        assert not [e for e in errors if "Content Security Policy" in e], errors
