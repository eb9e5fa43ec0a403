"""Billing pages and API: who sees which invoices, PDF download, usage against the plan,
revenue for billing staff, manual payments from the portal and the API; flat query counts."""

from __future__ import annotations

import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from pypdf import PdfReader

from billing import services
from billing.models import Invoice, Payment, UsageRecord
from tests.conftest import login, queries_for

pytestmark = pytest.mark.django_db


def make_invoice(customer, actor, *, total="10.00") -> Invoice:
    draft = Invoice.objects.create(customer=customer, issuer=customer.reseller, currency="EUR")
    draft.lines.create(description="Hosting plan Gold", amount=Decimal(total))
    return services.do_issue_invoice(draft, actor=actor, send=False)


@pytest.fixture
def invoices(admin_user, customer, mallory):
    return {
        "customer": make_invoice(customer, admin_user),
        "mallory": make_invoice(mallory, admin_user),
    }


def test_customers_see_their_own_invoices_only(invoices, customer, reseller, mallory):
    mine, theirs = invoices["customer"], invoices["mallory"]
    page = login(customer).get("/billing/")
    assert page.status_code == 200
    assert mine.number in page.content.decode() and "INV-000002" not in page.content.decode()
    assert login(customer).get(f"/billing/invoices/{theirs.uuid}/").status_code == 404
    assert login(reseller).get(f"/billing/invoices/{mine.uuid}/").status_code == 200
    detail = login(customer).get(f"/billing/invoices/{mine.uuid}/").content.decode()
    assert "Hosting plan Gold" in detail and "Record a payment" not in detail
    api = login(mallory).get("/api/v1/invoices/").json()
    assert [i["number"] for i in api["results"]] == [theirs.number]


def test_pdf_download(invoices, customer):
    resp = login(customer).get(f"/billing/invoices/{invoices['customer'].uuid}/pdf/")
    assert resp["Content-Type"] == "application/pdf"
    text = PdfReader(io.BytesIO(resp.content)).pages[0].extract_text()
    assert invoices["customer"].number in text and "10.00 EUR" in text
    api = login(customer).get(f"/api/v1/invoices/{invoices['customer'].uuid}/pdf/")
    assert api.status_code == 200 and api.content.startswith(b"%PDF")
    other = login(customer).get(f"/api/v1/invoices/{invoices['mallory'].uuid}/pdf/")
    assert other.status_code == 404


def test_billing_staff_record_payments_in_portal_and_api(invoices, billing_user, customer):
    invoice = invoices["customer"]
    client = login(billing_user)
    detail = client.get(f"/billing/invoices/{invoice.uuid}/").content.decode()
    assert "Record a payment" in detail
    client.post(f"/billing/invoices/{invoice.uuid}/payment/", {"amount": "4", "external_id": "B1"})
    assert Payment.objects.get(invoice=invoice).recorded_by == billing_user
    resp = client.post(
        f"/api/v1/invoices/{invoice.uuid}/record-payment/",
        {"amount": "6.00"},
        content_type="application/json",
    )
    assert resp.status_code == 201, resp.content
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID
    # The customer may not: out of reach for that action is 404, and nothing is recorded.
    other = invoices["mallory"]
    resp = login(customer).post(
        f"/api/v1/invoices/{other.uuid}/record-payment/", {"amount": "1"}, "application/json"
    )
    assert resp.status_code == 404
    resp = login(customer).post(
        f"/api/v1/invoices/{invoice.uuid}/record-payment/", {"amount": "1"}, "application/json"
    )
    assert resp.status_code == 404
    payments = login(customer).get("/api/v1/payments/").json()["results"]
    assert {p["amount"] for p in payments} == {"4.00", "6.00"}


def test_credit_and_void_from_the_portal(invoices, billing_user):
    client = login(billing_user)
    invoice = invoices["mallory"]
    client.post(f"/billing/invoices/{invoice.uuid}/credit/", {"amount": "2", "reason": "outage"})
    note = Invoice.objects.get(credits=invoice)
    assert note.number == "CN-000001" and note.total == Decimal("2.00")
    other = invoices["customer"]
    client.post(f"/billing/invoices/{other.uuid}/void/", {"reason": "duplicate"})
    other.refresh_from_db()
    assert other.state == Invoice.State.VOID


def test_revenue_page_is_for_those_who_work_invoices(invoices, billing_user, customer, support):
    page = login(billing_user).get("/billing/revenue/")
    assert page.status_code == 200
    body = page.content.decode()
    assert invoices["customer"].number in body and "20.00 EUR" in body
    assert login(customer).get("/billing/revenue/").status_code == 404
    assert login(support).get("/billing/revenue/").status_code == 404


def test_usage_against_the_plan(customer, mallory):
    from django.utils import timezone

    start = timezone.now().date().replace(day=1)
    for user, n in ((customer, 4), (mallory, 9)):
        UsageRecord.objects.create(
            account=user, period_start=start, period_end=start, kind="mailboxes",
            quantity=Decimal(n), included=Decimal(5), description="Mailboxes",
        )  # fmt: skip
    page = login(customer).get("/billing/usage/")
    bars = page.context["bars"]
    assert [(b["record"].account_id, b["width"], b["over"]) for b in bars] == [
        (customer.pk, 80.0, False)
    ]
    assert login(customer).get("/billing/usage/?month=garbage").status_code == 404
    api = login(customer).get("/api/v1/usage/").json()["results"]
    assert [r["quantity"] for r in api] == ["4.0000"]


def row_id(invoice: Invoice) -> str:
    """The invoice's row on the list (numbers repeat across issuers: the reseller's
    INV-000001 and the panel's)."""
    return f'id="invoice-{invoice.uuid.hex}-row"'


def test_invoice_list_has_the_filter_bar(invoices, billing_user, customer):
    """The list's filter bar: state and kind selects (the filter's choices, the current one
    selected) and a search box, reloading the list with htmx as the other lists do."""
    page = login(billing_user).get("/billing/?state=issued&kind=invoice&q=customer@").content
    body = page.decode()
    form = re.search(r'<form[^>]*data-testid="invoice-filters".*?</form>', body, re.S).group(0)
    assert 'hx-get="/billing/"' in form and 'hx-target="#list"' in form
    assert '<option value="issued" selected>Issued</option>' in form
    assert '<option value="paid" >Paid</option>' in form
    assert '<option value="invoice" selected>' in form
    assert 'name="q"' in form and 'value="customer@"' in form
    assert row_id(invoices["customer"]) in body and row_id(invoices["mallory"]) not in body


def test_invoice_list_htmx_reload_is_the_table_only(invoices, billing_user):
    client = login(billing_user)
    services.record_payment(
        invoices["customer"], amount=Decimal("10.00"), method="manual", actor=billing_user
    )
    resp = client.get("/billing/?state=paid", headers={"HX-Request": "true"})
    body = resp.content.decode()
    assert "invoice-filters" not in body and "<h1>" not in body
    assert row_id(invoices["customer"]) in body and row_id(invoices["mallory"]) not in body
    empty = client.get("/billing/?state=void", headers={"HX-Request": "true"}).content.decode()
    assert "No invoices yet." in empty and "<tr id=" not in empty


def test_invoice_search_by_number_or_customer_email(invoices, admin_user, billing_user, mallory):
    client = login(billing_user)
    mine, theirs = invoices["customer"], invoices["mallory"]
    another = make_invoice(mallory, admin_user)  # the panel's INV-000002: a unique number

    def found(query: str) -> set:
        return {row.pk for row in client.get(f"/billing/?q={query}").context["object_list"]}

    assert found("customer@example") == {mine.pk}
    assert found("MALLORY@") == {theirs.pk, another.pk}
    assert found(another.number) == {another.pk}
    assert found("nobody") == set()
    api = client.get("/api/v1/invoices/?q=customer@example").json()["results"]
    assert [i["uuid"] for i in api] == [str(mine.uuid)]


def test_invoice_search_stays_within_what_the_user_may_see(invoices, admin_user, customer):
    """A customer searching for another customer's email or number finds nothing."""
    client = login(customer)
    theirs = make_invoice(invoices["mallory"].customer, admin_user)  # INV-000002
    for query in ("mallory", theirs.number):
        assert list(client.get(f"/billing/?q={query}").context["object_list"]) == []
        assert client.get(f"/api/v1/invoices/?q={query}").json()["results"] == []


def test_billing_templates_use_only_classes_in_the_built_css():
    """static/css/panel.css is built (make css) and committed: a class a billing template
    uses that the build did not see (e.g. ``ml-2`` before a rebuild) styles nothing."""
    css = (Path(settings.BASE_DIR) / "static" / "css" / "panel.css").read_text()
    root = Path(settings.BASE_DIR) / "billing" / "templates" / "billing"
    missing = set()
    for template in root.rglob("*.html"):
        if "documents" in template.parts:  # the PDF's own stylesheet, not the portal's
            continue
        for attribute in re.findall(r'class="([^"]*)"', template.read_text()):
            for name in re.sub(r"\{%.*?%\}|\{\{.*?\}\}", " ", attribute).split():
                selector = "." + re.sub(r"([:/.\[\]%#()!,&>+~*=])", r"\\\1", name)
                if not re.search(re.escape(selector) + r"(?![\w-])", css):
                    missing.add(f"{template.name}: {name}")
    assert not missing, f"not in static/css/panel.css (run make css): {sorted(missing)}"


def test_lists_have_flat_query_counts(admin_user, billing_user, customer):
    client = login(billing_user)
    urls = [
        "/billing/",
        "/billing/?state=issued&kind=invoice&q=customer",
        "/api/v1/invoices/",
        "/api/v1/invoices/?q=customer",
        "/api/v1/payments/",
        "/api/v1/usage/",
    ]
    first = make_invoice(customer, admin_user)
    services.do_record_manual_payment(first, actor=billing_user, data={"amount": "1"})
    few = [queries_for(client, url) for url in urls]
    for _ in range(5):
        invoice = make_invoice(customer, admin_user)
        services.do_record_manual_payment(invoice, actor=billing_user, data={"amount": "1"})
    many = [queries_for(client, url) for url in urls]
    assert few == many


def test_customers_keep_their_billing_details(customer):
    from billing.models import BillingProfile
    from core.models import AuditEntry

    client = login(customer)
    assert client.get("/billing/profile/").status_code == 200
    resp = client.post(
        "/billing/profile/",
        {"legal_name": "Kunde GmbH", "address": "Weg 1\n10115 Berlin", "country": "DE"},
    )
    assert resp.status_code == 302
    profile = BillingProfile.objects.get(user=customer)
    assert (profile.legal_name, profile.country) == ("Kunde GmbH", "DE")
    assert AuditEntry.objects.filter(action="billing.profile.update").exists()
    bad = client.post("/billing/profile/", {"country": "Germany", "address": "x\u202ey"})
    assert bad.status_code == 400
    profile.refresh_from_db()
    assert profile.country == "DE"
