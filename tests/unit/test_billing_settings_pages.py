"""The billing settings and tax rate pages: billing staff and administrators change the
panel's settings and the tax rates (audited, errors by field, nothing lost), resellers their
own settings; everyone else gets 404; the tabs follow the policy; flat query counts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import BillingSettings, TaxRate
from core.models import AuditEntry
from tests.conftest import login, queries_for

pytestmark = pytest.mark.django_db

SETTINGS = {
    "currency": "EUR",
    "due_days": "30",
    "reminder_days": "5 10",
    "suspend_after_days": "",
    "country": "AT",
    "legal_name": "Panel GmbH",
    "address": "Ring 1\n1010 Wien",
    "tax_id": "ATU12345678",
    "invoice_prefix": "RE-",
    "credit_note_prefix": "GS-",
    "disk_gb_price": "0.10",
    "bandwidth_gb_price": "0.05",
    "extra_ip_price": "2.00",
}


def test_billing_staff_change_the_panels_settings(billing_user):
    client = login(billing_user)
    page = client.get("/billing/settings/")
    assert page.status_code == 200 and 'data-testid="settings-tab"' in page.content.decode()
    resp = client.post("/billing/settings/", SETTINGS)
    assert resp.status_code == 302, resp.content.decode()[:2000]
    panel = BillingSettings.objects.get(issuer=None)
    assert (panel.due_days, panel.suspend_after_days, panel.invoice_prefix) == (30, None, "RE-")
    assert panel.extra_ip_price == Decimal("2.00")
    entry = AuditEntry.objects.get(action="billing.settings.update")
    assert entry.actor_id == billing_user.pk and "due_days" in entry.changes


def test_settings_errors_are_shown_by_field_and_nothing_is_lost(admin_user):
    client = login(admin_user)
    client.post("/billing/settings/", SETTINGS)
    bad = dict(SETTINGS, currency="euro", country="XX", reminder_days="soon", legal_name="Neu")
    resp = client.post("/billing/settings/", bad)
    assert resp.status_code == 400
    form = resp.context["form"]
    assert set(form.errors) == {"currency", "country", "reminder_days"}
    assert form["legal_name"].value() == "Neu" and form["currency"].value() == "euro"
    panel = BillingSettings.objects.get(issuer=None)
    assert (panel.currency, panel.legal_name) == ("EUR", "Panel GmbH")


def test_a_reseller_keeps_its_own_settings(admin_user, reseller):
    login(admin_user).post("/billing/settings/", SETTINGS)
    client = login(reseller)
    page = client.get("/billing/settings/")
    assert page.status_code == 200
    form = page.context["form"]
    # Starts from the panel's terms, never with the panel's name, address or tax id.
    assert form["invoice_prefix"].value() == "RE-" and not form["legal_name"].value()
    assert not BillingSettings.objects.filter(issuer=reseller).exists()  # nothing saved yet
    resp = client.post("/billing/settings/", dict(SETTINGS, legal_name="Resell Ltd"))
    assert resp.status_code == 302
    own = BillingSettings.objects.get(issuer=reseller)
    assert own.legal_name == "Resell Ltd"
    assert BillingSettings.objects.get(issuer=None).legal_name == "Panel GmbH"
    client.post("/billing/settings/", dict(SETTINGS, legal_name="Resell AG"))
    own.refresh_from_db()
    assert own.legal_name == "Resell AG" and BillingSettings.objects.count() == 2


def test_settings_are_not_for_customers_or_support(customer, support):
    BillingSettings.objects.create()
    for user in (customer, support):
        client = login(user)
        assert client.get("/billing/settings/").status_code == 404
        assert client.post("/billing/settings/", SETTINGS).status_code == 404
    assert BillingSettings.objects.get().due_days == 14
    assert not AuditEntry.objects.filter(action="billing.settings.update").exists()


def test_tabs_follow_the_policy(billing_user, reseller, customer):
    def tabs(user):
        body = login(user).get("/billing/").content.decode()
        return {t for t in ("settings-tab", "tax-rates-tab") if f'data-testid="{t}"' in body}

    assert tabs(billing_user) == {"settings-tab", "tax-rates-tab"}
    assert tabs(reseller) == {"settings-tab"}
    assert tabs(customer) == set()


def test_billing_staff_add_change_and_delete_tax_rates(billing_user):
    client = login(billing_user)
    assert client.get("/billing/tax-rates/new/").status_code == 200
    resp = client.post("/billing/tax-rates/new/", {"country": "DE", "name": "USt", "rate": "19"})
    assert resp.status_code == 302 and resp["Location"] == reverse("billing_tax_rates")
    rate = TaxRate.objects.get(country="DE")
    listing = client.get("/billing/tax-rates/").content.decode()
    assert "USt" in listing and f'href="/billing/tax-rates/{rate.pk}/"' in listing
    resp = client.post(
        f"/billing/tax-rates/{rate.pk}/", {"country": "DE", "name": "MwSt", "rate": "7"}
    )
    assert resp.status_code == 302
    rate.refresh_from_db()
    assert (rate.name, rate.rate) == ("MwSt", Decimal("7.00"))
    assert client.get(f"/billing/tax-rates/{rate.pk}/delete/").status_code == 200
    assert client.post(f"/billing/tax-rates/{rate.pk}/delete/").status_code == 302
    assert not TaxRate.objects.exists()
    actions = list(
        AuditEntry.objects.filter(actor_id=billing_user.pk, action__startswith="tax_rate.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["tax_rate.create", "tax_rate.update", "tax_rate.delete"]


def test_tax_rate_errors_are_shown_by_field(admin_user):
    TaxRate.objects.create(country="DE", rate=Decimal(19))
    client = login(admin_user)
    resp = client.post("/billing/tax-rates/new/", {"country": "DE", "name": "VAT", "rate": "101"})
    assert resp.status_code == 400
    form = resp.context["form"]
    assert set(form.errors) == {"country", "rate"}
    assert form["rate"].value() == "101"
    resp = client.post(
        "/billing/tax-rates/new/", {"country": "Germany", "name": "VAT", "rate": "5"}
    )
    assert resp.status_code == 400 and set(resp.context["form"].errors) == {"country"}
    assert TaxRate.objects.count() == 1


def test_tax_rates_are_out_of_reach_for_customers_and_resellers(customer, reseller, support):
    rate = TaxRate.objects.create(country="DE", rate=Decimal(19))
    urls = [
        "/billing/tax-rates/",
        "/billing/tax-rates/new/",
        f"/billing/tax-rates/{rate.pk}/",
        f"/billing/tax-rates/{rate.pk}/delete/",
    ]
    for user in (customer, reseller):
        client = login(user)
        for url in urls:
            assert client.get(url).status_code == 404, (user, url)
            resp = client.post(url, {"country": "FR", "rate": "1"})
            assert resp.status_code in (404, 405), url
    # Support reads the list, without links or buttons, and changes nothing.
    client = login(support)
    listing = client.get("/billing/tax-rates/").content.decode()
    assert "Add tax rate" not in listing and f'href="/billing/tax-rates/{rate.pk}/"' not in listing
    for url in urls[1:]:
        assert client.post(url, {"country": "FR", "rate": "1"}).status_code == 404, url
    rate.refresh_from_db()
    assert (TaxRate.objects.count(), rate.country, rate.rate) == (1, "DE", Decimal("19.00"))
    assert not AuditEntry.objects.filter(action__startswith="tax_rate.").exists()


def test_tax_rate_list_has_a_flat_query_count(billing_user):
    client = login(billing_user)
    TaxRate.objects.create(country="DE", rate=Decimal(19))
    few = queries_for(client, "/billing/tax-rates/")
    for country in ("AT", "FR", "IT", "NL", "PL"):
        TaxRate.objects.create(country=country, rate=Decimal(20))
    assert queries_for(client, "/billing/tax-rates/") == few


def test_folded_routes_keep_their_urls_and_names():
    import uuid

    some = uuid.uuid4()
    assert reverse("billing_payment_methods") == "/billing/payments/"
    assert reverse("billing_dunning") == "/billing/payments/dunning/"
    assert reverse("billing_stripe_webhook") == "/billing/payments/stripe/webhook/"
    assert reverse("billing_pay_invoice", args=[some]) == f"/billing/payments/invoices/{some}/pay/"
    assert reverse("invoice-pay", args=[some]) == f"/api/v1/invoices/{some}/pay/"
    assert reverse("payment-method-list") == "/api/v1/payment-methods/"
    assert reverse("payment-method-default", args=[some]) == (
        f"/api/v1/payment-methods/{some}/default/"
    )
