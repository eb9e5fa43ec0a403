"""The shared base of browser tests: a forked Daphne on the test database, and Debian's
Chromium driven by Playwright."""

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asgiref.sync import SyncToAsync
from channels.layers import channel_layers
from channels.testing import ChannelsLiveServerTestCase
from django.contrib.contenttypes.models import ContentType
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.db import connections
from django_otp.oath import totp

from tests import support
from tests.conftest import PASSWORD, require_real

SHOTS = Path(__file__).parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM calls beside Playwright's loop


def _fresh_content_types(application):
    """The forked server outlives each test's flush, after which content types come back
    with new ids: it forgets the ids it cached before every request (else an operation's
    target type points at a row that is gone)."""
    handler = ASGIStaticFilesHandler(application)

    async def app(scope, receive, send):
        ContentType.objects.clear_cache()
        return await handler(scope, receive, send)

    return app


class LiveBrowser(ChannelsLiveServerTestCase):
    """A forked Daphne serving the test database, and Debian's Chromium to drive it."""

    host = "127.0.0.1"
    static_wrapper = staticmethod(_fresh_content_types)

    @classmethod
    def setUpClass(cls):
        # Daphne is forked from this process; SQLite must not have a connection open across
        # fork() (the child would read a stale WAL snapshot).
        connections.close_all()
        # Nor a Redis channel layer: the child would share the parent's sockets (and the
        # event loop they belong to), and hang on its first receive.
        channel_layers.backends.clear()
        # Nor asgiref's one worker thread for database calls, if an earlier test started it:
        # the child would inherit an executor whose thread does not exist there, and every
        # database_sync_to_async call of its websockets would wait forever.
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
        super().setUpClass()

    def setUp(self):
        if not shutil.which(CHROMIUM):
            require_real(f"{CHROMIUM} is not installed (apt-get install chromium)")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:  # pragma: no cover - dev extra missing
            require_real("the playwright package is not installed")
        SHOTS.mkdir(exist_ok=True)
        self.pw = self.browser = None
        self.sync_playwright = sync_playwright

    def start_browser(self):
        # After the test data exists: Playwright runs an event loop in this thread, and
        # publishing events (async_to_sync) must not happen beside it.
        self.pw = self.sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)

    def tearDown(self):
        support.gate.set()  # never leave a worker thread waiting past the test
        if self.browser:
            self.browser.close()
            self.pw.stop()

    def sign_in(self, page, user, device) -> None:
        page.fill("input[name=login]", user.email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/2fa/verify/**")
        code = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
        page.fill("input[name=code]", f"{code:06d}")
        page.click("form button.btn-primary")

    def sign_in_without_second_factor(self, page, user) -> None:
        page.fill("input[name=login]", user.email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.live_server_url}/")

    def open_signed_in(self, user, device, path: str, width: int = 1280, height: int = 900):
        """A new page at ``path`` once ``user`` has signed in (with the second factor)."""
        page = self.browser.new_page(viewport={"width": width, "height": height})
        page.goto(f"{self.live_server_url}{path}")
        self.sign_in(page, user, device)
        page.wait_for_url(f"**{path}")
        return page


AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page, impacts=("serious", "critical")) -> list[str]:
    """WCAG A/AA violations on the page as axe-core sees them, one line per failing node.

    axe is run through page.evaluate, which the page's CSP does not govern: the page keeps
    its strict policy while being checked."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text() + "\n;true")
    results = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || ''))}))",
        WCAG,
    )
    return [
        f"{v['impact']} {v['id']} ({v['help']}): {node}"
        for v in results
        if v["impact"] in impacts
        for node in v["nodes"]
    ]
