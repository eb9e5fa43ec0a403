"""The sweep as billing staff: every invoice, payment and usage record readable, nothing
else reachable (servers, websites, mail, customers' other data: 404, like any outsider),
and nothing changed by requests without a valid form (its own file: parallel workers
share the sweeps). Also the reseller that issued the victim's invoice (it works it), and
the tax rate routes, which have no owner."""

from decimal import Decimal

from billing.models import BillingProfile, Invoice, InvoiceLine, Payment, TaxRate, UsageRecord
from core.models import AuditEntry
from tests.conftest import login
from tests.unit.test_outsider_sweep import (  # noqa: F401 - fixtures
    _request,
    methods,
    outsiders,
    requests_for,
    snapshot,
    victims,
)

BILLING_READS = (Invoice, InvoiceLine, Payment, UsageRecord, BillingProfile)


def test_billing_staff_read_billing_and_reach_nothing_else(victims, outsiders):  # noqa: F811
    client = login(outsiders["billing"])
    objects = victims["objects"]
    theirs = [o for o in objects if isinstance(o, BILLING_READS)]
    others = [o for o in objects if not isinstance(o, BILLING_READS)]
    before = snapshot(objects)
    mark = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()
    billing_urls = set(requests_for(theirs))
    for url in set(requests_for(others)) - billing_urls:
        for method in methods(url):
            resp = _request(client, method, url)
            if url.startswith("/admin/"):  # billing staff have no admin site
                assert resp.status_code == 302 and "login" in resp["Location"], (method, url)
                continue
            assert resp.status_code in (404, 405), (method, url, resp.status_code)
    for url in billing_urls:
        for method in methods(url):
            resp = _request(client, method, url)
            assert resp.status_code < 500, (method, url)
            body = resp.content.decode(errors="replace")
            assert not [s for s in victims["secrets"] if s in body], url
    invoice = next(o for o in theirs if isinstance(o, Invoice))
    assert client.get(f"/billing/invoices/{invoice.uuid}/").status_code == 200
    assert client.get(f"/api/v1/invoices/{invoice.uuid}/").status_code == 200
    assert snapshot(objects) == before
    assert not AuditEntry.objects.filter(pk__gt=mark).exists()


def test_issuing_reseller_works_its_invoice_and_changes_nothing_without_a_form(victims):  # noqa: F811
    """The victim's reseller issued the victim invoice: every billing route answers (no
    500, no secret), and requests without a valid form record no payment or credit."""
    objects = victims["objects"]
    reseller = objects[0]
    invoice = next(o for o in objects if isinstance(o, Invoice))
    assert invoice.issuer_id == reseller.pk
    client = login(reseller)
    theirs = [o for o in objects if isinstance(o, BILLING_READS)]
    before = snapshot(objects)
    mark = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()
    for url in set(requests_for(theirs)):
        for method in methods(url):
            resp = _request(client, method, url)
            assert resp.status_code < 500, (method, url)
            body = resp.content.decode(errors="replace")
            assert not [s for s in victims["secrets"] if s in body], url
    detail = client.get(f"/billing/invoices/{invoice.uuid}/").content.decode()
    assert "Record a payment" in detail
    assert snapshot(objects) == before
    assert not AuditEntry.objects.filter(pk__gt=mark).exists()


def test_tax_rate_routes_refuse_outsiders(db, outsiders):  # noqa: F811
    """Tax rates have no owner: customers and resellers reach none of their routes,
    support reads the list only; nothing changes."""
    rate = TaxRate.objects.create(country="DE", rate=Decimal(19))
    # The portal's routes (the admin's are swept with the admin's rules elsewhere).
    urls = {u for u in requests_for([rate]) if not u.startswith("/admin/")}
    assert {f"/billing/tax-rates/{rate.pk}/", f"/billing/tax-rates/{rate.pk}/delete/"} <= urls
    before = snapshot([rate])
    for who in ("customer", "reseller", "support"):
        client = login(outsiders[who])
        for url in urls:
            for method in methods(url):
                resp = _request(client, method, url)
                assert resp.status_code in (404, 405), (who, method, url, resp.status_code)
    assert snapshot([rate]) == before
    assert not AuditEntry.objects.filter(action__startswith="tax_rate.").exists()
