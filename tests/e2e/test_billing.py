"""The billing pages in Debian's Chromium: a customer's invoices (filtered, the PDF, usage
bars; light, dark and phone), cards saved through Stripe.js and invoices paid with "Pay
now", and billing staff's revenue page, dunning queue and a payment recorded by hand.

Stripe is the stand-in of the integration tests (tests/integration/stripe_standin.py), a
real HTTP server on loopback: the panel's server process calls it as its API base, and the
browser reaches it at Stripe's own addresses through Playwright's routing: js.stripe.com
serves tests/e2e/stripe_js_standin.js, api.stripe.com is forwarded to the stand-in. The
page's CSP is the one it has in production (it names those two hosts)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from unittest import mock
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import override_settings
from django.utils import timezone
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from billing import cards, dunning, services, stripe_client
from billing.models import (
    BillingProfile,
    BillingSettings,
    Invoice,
    Payment,
    TaxRate,
    UsageKind,
    UsageRecord,
)
from billing.payment_models import PaymentCard, StripeAccount
from tests.conftest import PASSWORD, add_totp, make_user
from tests.e2e.browser import SHOTS, LiveBrowser
from tests.integration.stripe_standin import StripeStandIn
from tests.integration.test_billing_documents import pdf_text

API_KEY = "sk_test_e2e_billing"
PUBLISHABLE_KEY = "pk_test_e2e_billing"
WEBHOOK_SECRET = "whsec_e2e_billing"
STRIPE_JS = Path(__file__).parent / "stripe_js_standin.js"
PHONE = {"width": 390, "height": 844}

# What the page's CSP blocked, recorded from the first script on (the page keeps its policy).
CSP_WATCH = """window.__cspBlocked = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspBlocked.push(
  [e.violatedDirective, e.blockedURI, e.sourceFile, e.lineNumber].join(" ")));"""


@contextmanager
def issued_on(day):
    """Issue invoices as if on ``day`` (their issue date, due date and revenue month)."""
    moment = timezone.make_aware(timezone.datetime(day.year, day.month, day.day, 10))
    with mock.patch("billing.services.timezone.now", return_value=moment):
        yield


def month_start(months_ago: int) -> date:
    first = timezone.localdate().replace(day=1)
    for _ in range(months_ago):
        first = (first - timedelta(days=1)).replace(day=1)
    return first


def issue(customer, admin, lines, *, period: date, day: date | None = None) -> Invoice:
    """An invoice of ``lines`` ((description, quantity, unit, unit price)) for ``period``,
    issued by the panel's own service (numbers, totals, tax)."""
    profile = BillingProfile.objects.filter(user=customer).first()
    rate = TaxRate.objects.filter(country=getattr(profile, "country", "")).first()
    draft = Invoice.objects.create(
        customer=customer,
        currency="EUR",
        period_start=period,
        period_end=(period + timedelta(days=32)).replace(day=1),
        tax_rate=rate.rate if rate else Decimal("0"),
        tax_name=rate.name if rate else "",
        tax_country=rate.country if rate else "",
        bill_to=services.bill_to(customer, profile),
        bill_from={"name": "Example Hosting GmbH", "address": "Hauptstr. 1", "country": "DE"},
    )
    for position, (description, quantity, unit, price) in enumerate(lines):
        draft.lines.create(
            description=description,
            quantity=Decimal(quantity),
            unit=unit,
            unit_price=Decimal(price),
            amount=(Decimal(quantity) * Decimal(price)).quantize(Decimal("0.01")),
            position=position,
        )
    with issued_on(day or timezone.localdate()):
        services.do_issue_invoice(draft, actor=admin, send=False)
    draft.refresh_from_db()
    return draft


def text_of(page, testid: str) -> str:
    return page.locator(f"[data-testid={testid}]").inner_text()


@pytest.mark.e2e
class BillingJourney(LiveBrowser):
    @classmethod
    def setUpClass(cls):
        cls.stripe = StripeStandIn(
            api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, publishable_key=PUBLISHABLE_KEY
        ).start()
        cls.addClassCleanup(cls.stripe.stop)
        # Before the live server forks: its Stripe library calls the stand-in.
        stripe_base = override_settings(PANEL_STRIPE_API_BASE=cls.stripe.url)
        stripe_base.enable()
        cls.addClassCleanup(stripe_base.disable)
        super().setUpClass()

    # Helpers ----------------------------------------------------------------------------

    def customer_page(self, user, path: str, context=None, **viewport):
        """A page at ``path`` once ``user`` (a customer: no second factor) has signed in."""
        context = context or self.browser.new_context(
            viewport=viewport or {"width": 1280, "height": 900}
        )
        page = context.new_page()
        page.goto(f"{self.live_server_url}{path}")
        page.fill("input[name=login]", user.email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"**{path}")
        return page

    def phone_copy(self, page, path: str):
        """The same session at a phone's width."""
        phone = self.browser.new_context(viewport=PHONE)
        phone.add_cookies(page.context.cookies())
        mobile = phone.new_page()
        mobile.goto(f"{self.live_server_url}{path}")
        return mobile

    def stripe_post(self, path: str, fields: dict) -> int:
        """POST to the Stripe stand-in without the secret key: the HTTP status."""
        request = urllib.request.Request(f"{self.stripe.url}{path}", urlencode(fields).encode())
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    @staticmethod
    def fits_the_width(page) -> bool:
        return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    def stripe_context(self):
        """A browser context that reaches "Stripe": Stripe.js from the stand-in file and
        api.stripe.com forwarded to the stand-in server (with the CORS header Stripe's API
        answers with). Returns the context and the list of Stripe.js loads."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(CSP_WATCH)
        loads = []

        def stripe_js(route, request):
            loads.append(request.url)
            route.fulfill(
                status=200, content_type="application/javascript", body=STRIPE_JS.read_text()
            )

        def stripe_api(route, request):
            url = urlsplit(request.url)
            answer = route.fetch(url=f"{self.stripe.url}{url.path}?{url.query}".rstrip("?"))
            route.fulfill(
                response=answer,
                headers={**answer.headers, "access-control-allow-origin": "*"},
            )

        context.route("https://js.stripe.com/**", stripe_js)
        context.route("https://api.stripe.com/**", stripe_api)
        return context, loads

    # 1. A customer's invoices, their PDF and usage --------------------------------------

    def test_customer_invoices_pdf_and_usage(self):
        admin = make_user("billing-admin@example.com", "admin")
        customer = make_user("kunde@example.com", "customer")
        other = make_user("other@example.com", "customer")
        TaxRate.objects.create(country="DE", rate=Decimal("19.00"), name="USt")
        BillingProfile.objects.create(
            user=customer, legal_name="Kunde GmbH", country="DE", address="Weg 2, Berlin"
        )
        paid = issue(
            customer, admin, [("Hosting plan Gold", "1", "", "12.50")], period=month_start(2),
            day=month_start(1),
        )  # fmt: skip
        services.record_payment(paid, amount=paid.total, method="manual", actor=admin)
        due = issue(
            customer, admin,
            [("Hosting plan Gold", "1", "", "12.50"), ("Disk over the plan", "3", "GB", "0.50")],
            period=month_start(1),
        )  # fmt: skip
        voided = issue(
            customer, admin, [("VPS web1 (S)", "10", "h", "0.01")], period=date(2020, 1, 1)
        )
        services.do_void_invoice(voided, actor=admin, reason="issued by mistake")
        hidden = issue(
            other, admin, [("Someone else's plan", "1", "", "99")], period=month_start(1)
        )
        today = month_start(0)
        for kind, quantity, included, description in [
            (UsageKind.WEBSITE_PLAN, "1", "0", "Hosting plan Gold"),
            (UsageKind.DISK_GB, "7.5", "10", ""),
            (UsageKind.BANDWIDTH_GB, "130", "100", ""),
        ]:
            UsageRecord.objects.create(
                account=customer, period_start=today, kind=kind,
                period_end=(today + timedelta(days=32)).replace(day=1),
                quantity=Decimal(quantity), included=Decimal(included), description=description,
            )  # fmt: skip

        self.start_browser()
        page = self.customer_page(customer, "/billing/")
        table = page.locator("[data-testid=invoices-table]")
        expect(table.locator("tbody tr")).to_have_count(3)
        assert hidden.number not in table.inner_text()  # INV-000004: another customer's
        for invoice, state in [(paid, "Paid"), (due, "Issued"), (voided, "Void")]:
            expect(page.locator(f"#invoice-{invoice.uuid.hex}-row")).to_contain_text(state)
        expect(page.locator(f"#invoice-{due.uuid.hex}-row")).to_contain_text("16.66 EUR")
        page.screenshot(path=str(SHOTS / "billing-invoices.png"), full_page=True)

        # Filtered by state with the list's filter bar (htmx reloads the list, the address
        # keeps the filter), and by the address's ?state=, as the API's filter.
        rows = page.locator("[data-testid=invoices-table] tbody tr")
        page.select_option("[data-testid=invoice-filters] select[name=state]", "paid")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text(paid.number)
        expect(rows).to_contain_text("Paid")
        assert "state=paid" in page.url
        page.screenshot(path=str(SHOTS / "billing-invoices-paid.png"), full_page=True)
        page.select_option("[data-testid=invoice-filters] select[name=state]", "")
        expect(rows).to_have_count(3)
        page.fill("[data-testid=invoice-filters] input[name=q]", voided.number)
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("Void")
        page.fill("[data-testid=invoice-filters] input[name=q]", "no such invoice")
        expect(rows).to_have_count(0)
        expect(page.locator("#list [data-empty]")).to_contain_text("No invoices")
        for state, shown in [("paid", paid), ("issued", due), ("void", voided)]:
            page.goto(f"{self.live_server_url}/billing/?state={state}")
            expect(rows).to_have_count(1)
            expect(rows).to_contain_text(shown.number)
            selected = page.locator("[data-testid=invoice-filters] select[name=state]")
            expect(selected).to_have_value(state)

        # The invoice: lines, totals (19 % USt on 14.00), balance, the PDF.
        page.goto(f"{self.live_server_url}/billing/")
        page.click(f"text={due.number}")
        page.wait_for_url(f"**{due.get_absolute_url()}")
        expect(page.locator("h1")).to_contain_text(f"Invoice {due.number}")
        lines = page.locator("[data-testid=lines-table] tbody tr")
        expect(lines).to_have_count(2)
        expect(lines.nth(0)).to_contain_text("Hosting plan Gold")
        expect(lines.nth(1)).to_contain_text("Disk over the plan")
        expect(lines.nth(1)).to_contain_text("3 GB")
        expect(lines.nth(1)).to_contain_text("1.50")
        body = page.locator("main").inner_text()
        assert "14.00 EUR" in body and "USt 19.00%" in body and "2.66 EUR" in body
        assert text_of(page, "total") == "16.66 EUR"
        assert text_of(page, "balance") == "16.66 EUR"
        page.screenshot(path=str(SHOTS / "billing-invoice.png"), full_page=True)

        with page.expect_download() as download:
            page.click("[data-testid=pdf-link]")
        assert download.value.suggested_filename == f"{due.number}.pdf"
        pdf_url = page.get_attribute("[data-testid=pdf-link]", "href")
        answer = page.request.get(f"{self.live_server_url}{pdf_url}")
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/pdf"
        text = pdf_text(answer.body())
        assert f"Invoice {due.number}" in text and "Kunde GmbH" in text
        assert "Disk over the plan" in text and "16.66 EUR" in text
        assert pdf_text(Path(download.value.path()).read_bytes()) == text
        # Another customer's PDF is out of reach.
        assert (
            page.request.get(f"{self.live_server_url}/billing/invoices/{hidden.uuid}/pdf/").status
            == 404
        )

        # Usage against the plan: green under it, red over it, unmetered without a bar.
        page.goto(f"{self.live_server_url}/billing/usage/")
        usage = page.locator("[data-testid=usage-table] tbody tr")
        expect(usage).to_have_count(3)
        disk = usage.filter(has_text="Disk (GB)")
        expect(disk.locator("svg")).to_have_attribute("aria-label", "75% of the plan")
        assert disk.locator("rect.fill-emerald-500").get_attribute("width") == "75.0"
        over = usage.filter(has_text="Bandwidth (GB)")
        expect(over.locator("svg")).to_have_attribute("aria-label", "130% of the plan: over it")
        assert over.locator("rect.fill-red-500").get_attribute("width") == "100.0"
        plan = usage.filter(has_text="Hosting plan Gold")
        expect(plan.locator("svg")).to_have_attribute("aria-label", "not limited")
        expect(plan.locator("rect")).to_have_count(1)  # the frame, no bar
        page.screenshot(path=str(SHOTS / "billing-usage.png"), full_page=True)

        # Dark theme (the visitor's preference) and a phone's width.
        page.emulate_media(color_scheme="dark")
        for path, name in [
            ("/billing/", "invoices"),
            (due.get_absolute_url(), "invoice"),
            ("/billing/usage/", "usage"),
            ("/billing/profile/", "profile"),
            ("/billing/payments/", "payment-methods"),
        ]:
            page.goto(f"{self.live_server_url}{path}")
            assert "dark" in page.locator("html").get_attribute("class")
            page.screenshot(path=str(SHOTS / f"billing-{name}-dark.png"), full_page=True)
        for path, name in [
            ("/billing/", "invoices"),
            (due.get_absolute_url(), "invoice"),
            ("/billing/usage/", "usage"),
            ("/billing/profile/", "profile"),
            ("/billing/payments/", "payment-methods"),
        ]:
            mobile = self.phone_copy(page, path)
            assert self.fits_the_width(mobile), f"{path} scrolls sideways on a phone"
            mobile.screenshot(path=str(SHOTS / f"billing-{name}-phone.png"), full_page=True)
            mobile.context.close()

    # 2, 3. Cards through Stripe.js, Pay now ---------------------------------------------

    def test_cards_and_pay_now(self):
        admin = make_user("billing-admin2@example.com", "admin")
        customer = make_user("payer@example.com", "customer")
        StripeAccount.objects.create(
            secret_key=API_KEY, webhook_secret=WEBHOOK_SECRET, publishable_key=PUBLISHABLE_KEY
        )
        first = issue(
            customer, admin, [("Hosting plan Gold", "1", "", "12.50")], period=month_start(2)
        )
        second = issue(
            customer, admin, [("VPS web1 (M)", "100", "h", "0.30")], period=month_start(1)
        )

        self.start_browser()
        context, loads = self.stripe_context()
        to_panel = []
        context.on(
            "request",
            lambda r: to_panel.append(f"{r.url} {r.post_data or ''}")
            if r.url.startswith(self.live_server_url) else None,
        )  # fmt: skip
        page = self.customer_page(customer, "/billing/payments/", context=context)
        answer = page.reload()
        policy = answer.headers["content-security-policy"]
        assert re.search(r"script-src [^;]*https://js\.stripe\.com", policy), policy
        assert re.search(r"connect-src [^;]*https://api\.stripe\.com", policy), policy
        assert loads and loads[-1] == "https://js.stripe.com/v3/"
        expect(page.locator("[data-testid=cards]")).to_contain_text("No card saved yet.")
        card_number = page.locator("#stripe-card-element [data-testid=card-number]")

        def add_card(number: str) -> None:
            card_number.fill(number)
            page.click("button:has-text('Save card')")

        add_card("4242 4242 4242 4242")
        rows = page.locator("[data-testid=card-row]")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Visa ending 4242")
        expect(rows.first.locator(".badge")).to_have_text("default")
        visa = PaymentCard.objects.get(user=customer)
        assert (visa.brand, visa.last4, visa.is_default) == ("visa", "4242", True)
        # Stripe.js confirmed with the publishable key and the client secret, not the
        # secret key; the panel saw the SetupIntent, never the number.
        confirm = [r for r in self.stripe.requests if r[1].endswith("/confirm")][-1]
        assert confirm[2]["key"] == PUBLISHABLE_KEY and "_secret_" in confirm[2]["client_secret"]
        assert "Authorization" not in confirm[3]
        assert confirm[2]["payment_method"] == "pm_card_visa"
        # The publishable key opens that one call, with the intent's own client secret only.
        intent_id = confirm[1].split("/")[3]
        browser = {"key": PUBLISHABLE_KEY, "payment_method": "pm_card_visa"}
        wrong = {**browser, "client_secret": f"{intent_id}_secret_guessed"}
        assert self.stripe_post(f"/v1/setup_intents/{intent_id}/confirm", wrong) == 401
        assert self.stripe_post("/v1/customers", {**browser, "email": "x@example.com"}) == 401
        assert not [r for r in to_panel if "4242" in r], to_panel
        page.screenshot(path=str(SHOTS / "billing-cards-one.png"), full_page=True)

        add_card("5555 5555 5555 4444")
        mastercard_row = rows.filter(has_text="Mastercard ending 4444")
        expect(mastercard_row).to_have_count(1)
        expect(mastercard_row.locator(".badge")).to_have_count(0)
        mastercard_row.locator("button:has-text('Make default')").click()
        expect(mastercard_row.locator(".badge")).to_have_text("default")
        expect(rows.filter(has_text="Visa ending 4242").locator(".badge")).to_have_count(0)
        assert PaymentCard.objects.get(user=customer, is_default=True).last4 == "4444"
        rows.filter(has_text="Visa ending 4242").locator("button:has-text('Remove')").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Mastercard ending 4444")
        assert not PaymentCard.objects.filter(pk=visa.pk).exists()
        assert self.stripe.objects[visa.stripe_id]["customer"] is None  # detached at Stripe

        # A number Stripe does not know: Stripe's answer in the form, nothing saved.
        add_card("4000 0000 0000 0069")
        error = page.locator("#stripe-card-error")
        expect(error).to_contain_text("No such payment_method")
        style = "(el) => getComputedStyle(el).color"
        assert error.evaluate(style) != page.locator("body").evaluate(style)  # in red
        assert PaymentCard.objects.filter(user=customer).count() == 1
        assert len([r for r in to_panel if "/cards/save/" in r]) == 2  # the two cards above
        assert not [r for r in to_panel if re.search(r"4242|4444|0069", r)], to_panel
        page.screenshot(path=str(SHOTS / "billing-card-error.png"), full_page=True)
        assert page.evaluate("window.__cspBlocked") == []

        # Pay now with the default card: paid, the payment listed.
        page.goto(f"{self.live_server_url}{first.get_absolute_url()}")
        expect(page.locator("[data-testid=pay-now]")).to_have_text("Pay now (12.50 EUR)")
        page.click("[data-testid=pay-now]")
        expect(page.locator("#toasts")).to_contain_text("Paid: 12.50 EUR.")
        expect(page.locator("main")).to_contain_text("Paid")
        expect(page.locator("[data-testid=pay-now]")).to_have_count(0)
        assert text_of(page, "balance") == "0.00 EUR"
        first.refresh_from_db()
        payment = first.payments.get()
        assert first.state == Invoice.State.PAID and payment.state == Payment.State.SUCCEEDED
        expect(page.locator("main")).to_contain_text(f"12.50 EUR (Stripe, {payment.external_id})")
        page.screenshot(path=str(SHOTS / "billing-paid.png"), full_page=True)

        # A declining card: its message, the invoice still issued and payable.
        page.goto(f"{self.live_server_url}/billing/payments/")
        add_card("4000 0000 0000 0002")
        declining = rows.filter(has_text="Visa ending 0002")
        expect(declining).to_have_count(1)
        declining.locator("button:has-text('Make default')").click()
        expect(declining.locator(".badge")).to_have_text("default")
        page.goto(f"{self.live_server_url}{second.get_absolute_url()}")
        page.click("[data-testid=pay-now]")
        expect(page.locator("#toasts")).to_contain_text("Your card was declined.")
        section = page.locator("[data-testid=invoice-payments]")
        expect(section).to_contain_text("card payment failed: Your card was declined.")
        expect(page.locator("[data-testid=pay-now]")).to_have_text("Pay now (30.00 EUR)")
        page.screenshot(path=str(SHOTS / "billing-declined.png"), full_page=True)
        second.refresh_from_db()
        assert second.state == Invoice.State.ISSUED and second.amount_paid == 0
        assert second.payments.get().state == Payment.State.FAILED
        assert page.evaluate("window.__cspBlocked") == []

    # 4. 3-D Secure on session ------------------------------------------------------------

    def test_pay_now_with_3d_secure(self):
        """Pay now with a card that needs authentication: the browser goes to the bank's page
        (the stand-in's, like Stripe's test page) and back to the panel, paid or not.

        Chromium applies the CSP form-action of the page holding the form to every redirect
        of its submission (checked: form-action 'self' blocks a POST answered by a 302 to
        another origin), so the invoice page's policy must allow where Pay now redirects."""
        admin = make_user("billing-admin4@example.com", "admin")
        customer = make_user("secure@example.com", "customer")
        StripeAccount.objects.create(
            secret_key=API_KEY, webhook_secret=WEBHOOK_SECRET, publishable_key=PUBLISHABLE_KEY
        )
        setup = cards.start_card_setup(customer, actor=customer)
        stripe_client.confirm_setup_intent(setup["setup_intent"], "pm_card_authenticationRequired")
        cards.do_save_card(customer, actor=customer, setup_intent=setup["setup_intent"])
        completed = issue(
            customer, admin, [("Hosting plan Gold", "1", "", "12.50")], period=month_start(2)
        )
        failed = issue(
            customer, admin, [("Hosting plan Gold", "1", "", "12.50")], period=month_start(1)
        )

        self.start_browser()
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(CSP_WATCH)
        page = self.customer_page(customer, completed.get_absolute_url(), context=context)
        authentication = re.compile(rf"^{re.escape(self.stripe.url)}/3ds/pi_\w+$")

        def pay_now_and_authenticate(invoice, button: str) -> None:
            page.click("[data-testid=pay-now]")
            try:
                page.wait_for_url(authentication, timeout=10000)
            except PlaywrightTimeout:
                # A form's CSP form-action also governs where its submission is redirected.
                raise AssertionError(
                    f"Pay now did not reach the bank's page; the CSP blocked "
                    f"{page.evaluate('window.__cspBlocked')}"
                ) from None
            attempt = invoice.payments.get(state=Payment.State.PENDING)
            assert page.url.endswith(attempt.external_id)
            expect(page.locator("body")).to_contain_text("12.50 EUR")
            page.screenshot(path=str(SHOTS / "billing-3ds.png"), full_page=True)
            page.click(f"button:has-text('{button}')")
            page.wait_for_url(f"{self.live_server_url}{invoice.get_absolute_url()}")

        pay_now_and_authenticate(completed, "Complete authentication")
        expect(page.locator("p.muted").first).to_contain_text("Paid")
        expect(page.locator("[data-testid=pay-now]")).to_have_count(0)
        completed.refresh_from_db()
        assert completed.state == Invoice.State.PAID
        assert completed.payments.get().state == Payment.State.SUCCEEDED
        page.screenshot(path=str(SHOTS / "billing-3ds-paid.png"), full_page=True)

        page.goto(f"{self.live_server_url}{failed.get_absolute_url()}")
        pay_now_and_authenticate(failed, "Fail authentication")
        expect(page.locator("[data-testid=invoice-payments]")).to_contain_text(
            re.compile("card payment failed: .*authentication")
        )
        expect(page.locator("[data-testid=pay-now]")).to_have_text("Pay now (12.50 EUR)")
        failed.refresh_from_db()
        assert failed.state == Invoice.State.ISSUED and failed.amount_paid == 0
        assert failed.payments.get().state == Payment.State.FAILED
        page.screenshot(path=str(SHOTS / "billing-3ds-failed.png"), full_page=True)
        assert page.evaluate("window.__cspBlocked") == []

    # 5. Billing staff -------------------------------------------------------------------

    def test_billing_staff_revenue_dunning_and_manual_payment(self):
        admin = make_user("billing-admin3@example.com", "admin")
        staff = make_user("accounts@example.com", "billing")
        device = add_totp(staff)
        BillingSettings.objects.update_or_create(
            issuer=None, defaults={"due_days": 14, "reminder_days": "3 7"}
        )
        alice = make_user("alice@example.com", "customer")
        bob = make_user("bob@example.com", "customer")
        two_ago, last = month_start(2), month_start(1)
        settled = issue(alice, admin, [("Hosting plan Gold", "1", "", "40.00")],
                        period=month_start(3), day=two_ago + timedelta(days=1))  # fmt: skip
        services.record_payment(settled, amount=Decimal("40.00"), method="manual", actor=admin)
        overdue = issue(bob, admin, [("VPS db1 (L)", "1", "", "80.00")],
                        period=two_ago, day=last + timedelta(days=1))  # fmt: skip
        dunning.run(today=overdue.due_date + timedelta(days=7))  # reminders of day 3 and 7
        current = issue(alice, admin, [("Hosting plan Gold", "1", "", "20.00")], period=last)
        rate = TaxRate.objects.create(country="AT", rate=Decimal("20.00"), name="USt")

        self.start_browser()
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{self.live_server_url}/billing/revenue/")
        self.sign_in(page, staff, device)
        page.wait_for_url("**/billing/revenue/")

        # Revenue: a row and a bar per month, the largest month full width.
        months = page.locator("[data-testid=revenue-table] tbody tr")
        expect(months).to_have_count(3)
        widths = {
            months.nth(i).locator("td").first.inner_text(): months.nth(i)
            .locator("rect")
            .get_attribute("width")
            for i in range(3)
        }
        assert widths == {
            f"{month_start(0):%Y-%m}": "25.0",
            f"{last:%Y-%m}": "100.0",
            f"{two_ago:%Y-%m}": "50.0",
        }
        expect(months.filter(has_text=f"{two_ago:%Y-%m}")).to_contain_text("40.00 EUR")
        unpaid = page.locator("[data-testid=unpaid-table] tbody tr")
        expect(unpaid).to_have_count(2)
        expect(unpaid.filter(has_text=overdue.number)).to_contain_text("overdue")
        expect(unpaid.filter(has_text=current.number)).not_to_contain_text("overdue")
        page.screenshot(path=str(SHOTS / "billing-revenue.png"), full_page=True)

        # The dunning queue: the overdue invoice and its reminders.
        page.click("a:has-text('Dunning queue')")
        page.wait_for_url("**/billing/payments/dunning/")
        queue = page.locator("[data-testid=dunning-row]")
        expect(queue).to_have_count(1)
        days = (timezone.localdate() - overdue.due_date).days
        expect(queue).to_contain_text(overdue.number)
        expect(queue).to_contain_text("bob@example.com")
        expect(queue).to_contain_text(f"{days} days")
        expect(queue).to_contain_text("Reminder sent (day 7)")
        page.screenshot(path=str(SHOTS / "billing-dunning.png"), full_page=True)

        # A bank transfer recorded by hand: more than the balance is refused, then paid.
        page.goto(f"{self.live_server_url}{overdue.get_absolute_url()}")
        form = page.locator("[data-testid=payment-form]")
        form.locator("input[name=amount]").fill("100.00")
        form.locator("input[name=external_id]").fill("BANK-2024-0042")
        form.locator("button:has-text('Record')").click()
        expect(page.locator("#toasts")).to_contain_text("At most the balance due, 80.00.")
        overdue.refresh_from_db()
        assert overdue.state == Invoice.State.ISSUED and not overdue.payments.exists()
        page.screenshot(path=str(SHOTS / "billing-payment-refused.png"), full_page=True)
        form.locator("input[name=amount]").fill("80.00")
        form.locator("input[name=external_id]").fill("BANK-2024-0042")
        form.locator("button:has-text('Record')").click()
        expect(page.locator("#toasts")).to_contain_text("Payment recorded.")
        expect(page.locator("main")).to_contain_text("80.00 EUR (Manual")
        expect(page.locator("main")).to_contain_text("BANK-2024-0042")
        expect(page.locator("[data-testid=payment-form]")).to_have_count(0)
        overdue.refresh_from_db()
        payment = overdue.payments.get()
        assert (payment.amount, payment.method, payment.recorded_by) == (
            Decimal("80.00"), "manual", staff,
        )  # fmt: skip
        assert overdue.state == Invoice.State.PAID
        page.screenshot(path=str(SHOTS / "billing-payment-recorded.png"), full_page=True)
        # Paid: out of the dunning queue.
        page.goto(f"{self.live_server_url}/billing/payments/dunning/")
        expect(page.locator("main")).to_contain_text("No invoice is overdue.")

        # The invoice list for staff: searched by customer, then filtered by state.
        page.goto(f"{self.live_server_url}/billing/")
        rows = page.locator("[data-testid=invoices-table] tbody tr")
        expect(rows).to_have_count(3)
        page.fill("[data-testid=invoice-filters] input[name=q]", "alice@")
        expect(rows).to_have_count(2)
        expect(rows.filter(has_text="bob@example.com")).to_have_count(0)
        page.select_option("[data-testid=invoice-filters] select[name=state]", "paid")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text(settled.number)
        assert "q=alice%40" in page.url and "state=paid" in page.url
        page.screenshot(path=str(SHOTS / "billing-invoices-staff.png"), full_page=True)

        # Staff's pages in light and dark, and at a phone's width without sideways scrolling.
        staff_pages = [
            ("/billing/revenue/", "revenue"),
            ("/billing/settings/", "settings"),
            ("/billing/tax-rates/", "tax-rates"),
            (f"/billing/tax-rates/{rate.pk}/", "tax-rate"),
        ]
        for path, name in staff_pages[1:]:
            page.goto(f"{self.live_server_url}{path}")
            expect(page.locator("h1")).to_be_visible()
            page.screenshot(path=str(SHOTS / f"billing-{name}.png"), full_page=True)
        expect(page.locator("[data-testid=tax-rate-form]")).to_be_visible()
        page.goto(f"{self.live_server_url}/billing/tax-rates/")
        expect(page.locator("[data-testid=tax-rates-table] tbody tr")).to_contain_text("AT")
        page.emulate_media(color_scheme="dark")
        for path, name in staff_pages:
            page.goto(f"{self.live_server_url}{path}")
            assert "dark" in page.locator("html").get_attribute("class")
            page.screenshot(path=str(SHOTS / f"billing-{name}-dark.png"), full_page=True)
        for path, name in [*staff_pages, ("/billing/", "invoices-staff")]:
            mobile = self.phone_copy(page, path)
            assert self.fits_the_width(mobile), f"{path} scrolls sideways on a phone"
            mobile.screenshot(path=str(SHOTS / f"billing-{name}-phone.png"), full_page=True)
            mobile.context.close()
