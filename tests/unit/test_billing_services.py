"""billing: usage from the other apps' rows, rating, issuing in bulk with gapless numbers
per issuer, credit notes, voiding, manual payments, and their audit entries."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from billing import services
from billing.models import (
    BillingProfile,
    BillingSettings,
    Invoice,
    InvoiceSequence,
    Payment,
    TaxRate,
    UsageKind,
    UsageRecord,
)
from billing.rating import rate_usage
from billing.usage import BillingPeriod, collect_usage
from core.models import AuditEntry
from hooks.models import EventType
from servers.models import Server
from vps.models import Hypervisor, IpAddress, IpPool, Vps, VpsPlan
from websites.models import Plan, SiteTraffic, Subscription, SystemAccount, Website

OCTOBER = BillingPeriod.parse("2026-10")


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


@pytest.fixture
def world(db, admin_user, reseller, customer, mallory):
    """mallory: the panel's customer with a hosting plan and a VPS (two extra addresses);
    customer: the reseller's, on the reseller's plan, half a month, over its bandwidth."""
    BillingSettings.objects.create(
        issuer=None, country="DE", legal_name="Panel GmbH", extra_ip_price=Decimal("2.00")
    )
    BillingSettings.objects.create(
        issuer=reseller, legal_name="Resell Ltd", bandwidth_gb_price=Decimal("0.50")
    )
    TaxRate.objects.create(country="DE", rate=Decimal("19.00"))
    TaxRate.objects.create(country="FR", rate=Decimal("20.00"))
    big = Plan.objects.create(name="Big", price=Decimal("20.00"), disk_mb=1024, mailboxes=5)
    resold = Plan.objects.create(
        name="Resold", owner=reseller, price=Decimal("10.00"), bandwidth_gb=1
    )
    Subscription.objects.create(user=mallory, plan=big, created_at=at(1))
    Subscription.objects.create(user=customer, plan=resold, created_at=at(17))
    BillingProfile.objects.create(user=customer, country="FR", legal_name="Customer SARL")
    server = Server.objects.create(name="web1", address="93.184.216.34", owner=admin_user)
    site = Website.objects.create(domain="c.example.test", server=server, owner=customer)
    SiteTraffic.objects.create(website=site, month=OCTOBER.start, bytes=3 * 10**9)
    SystemAccount.objects.create(server=server, user=mallory, disk_used_mb=512)
    hv_server = Server.objects.create(
        name="hv", address="198.51.100.10", transport=Server.Transport.LOCAL, owner=admin_user
    )
    hv = Hypervisor.objects.create(
        server=hv_server, uri="test:///default", status="online", cpus=8, memory_mib=8192,
        storage_gib=200,
    )  # fmt: skip
    vps_plan = VpsPlan.objects.create(name="S", price=Decimal("73.00"), ip_count=1)
    vps = Vps.objects.create(
        hostname="v1", owner=mallory, plan=vps_plan, hypervisor=hv, state="running",
        created_at=at(21),
    )  # fmt: skip
    pool = IpPool.objects.create(
        name="p", hypervisor=hv, network="203.0.113.0/24", gateway="203.0.113.1",
        first="203.0.113.10", last="203.0.113.20",
    )  # fmt: skip
    for i in range(3):
        IpAddress.objects.create(pool=pool, address=f"203.0.113.{10 + i}", vps=vps)
    return {"vps": vps}


def run(actor, send=False) -> list[Invoice]:
    collect_usage(OCTOBER, actor=actor)
    rate_usage(OCTOBER, actor=actor)
    ids = services.issue_period(OCTOBER, actor=actor, send=send)
    return list(Invoice.objects.filter(pk__in=ids).order_by("customer__email"))


def test_usage_is_measured_from_the_apps(world, mallory, customer, admin_user):
    collect_usage(OCTOBER, actor=admin_user)
    got = {(r.account_id, r.kind): r for r in UsageRecord.objects.all()}
    assert got[(mallory.pk, UsageKind.WEBSITE_PLAN)].quantity == 1
    assert got[(customer.pk, UsageKind.WEBSITE_PLAN)].quantity == Decimal("0.4839")  # 15/31
    assert got[(customer.pk, UsageKind.BANDWIDTH_GB)].quantity == 3
    assert got[(customer.pk, UsageKind.BANDWIDTH_GB)].included == 1
    assert got[(mallory.pk, UsageKind.DISK_GB)].quantity == Decimal("0.5")
    assert got[(mallory.pk, UsageKind.VPS_HOURS)].quantity == 11 * 24
    assert got[(mallory.pk, UsageKind.EXTRA_IPS)].quantity == 2
    # Again: the same rows, not twice as many.
    count = UsageRecord.objects.count()
    collect_usage(OCTOBER, actor=admin_user)
    assert UsageRecord.objects.count() == count


def test_a_deleted_vps_counts_until_its_deletion(world, mallory, admin_user):
    from core import audit

    vps = world["vps"]
    entry = audit.record("vps.delete", vps, actor=admin_user)
    AuditEntry.objects.filter(pk=entry.pk).update(created_at=at(22, 12))
    Vps.objects.filter(pk=vps.pk).update(state=Vps.State.DELETED)
    collect_usage(OCTOBER, actor=admin_user)
    hours = UsageRecord.objects.get(account=mallory, kind=UsageKind.VPS_HOURS).quantity
    assert hours == 36


def test_period_is_rated_and_invoiced_by_the_right_issuer(world, mallory, customer, reseller):
    admin = world["vps"].hypervisor.server.owner
    customer_inv, mallory_inv = run(admin)
    # mallory, the panel's: 20 plan + 264 h at 0.1 + 2 extra IPs at 2 = 50.40, DE 19 %.
    assert (mallory_inv.issuer_id, mallory_inv.number) == (None, "INV-000001")
    assert mallory_inv.subtotal == Decimal("50.40")
    assert mallory_inv.tax_total == Decimal("9.58") and mallory_inv.total == Decimal("59.98")
    assert mallory_inv.state == Invoice.State.ISSUED and mallory_inv.due_date
    assert {line.description for line in mallory_inv.lines.all()} == {
        "Hosting plan Big",
        "VPS v1 (plan S)",
        "Extra IP addresses",
    }
    # customer, the reseller's: 15/31 of 10 = 4.84 + 2 GB over at 0.50; FR 20 %.
    assert (customer_inv.issuer_id, customer_inv.number) == (reseller.pk, "INV-000001")
    assert customer_inv.subtotal == Decimal("5.84") and customer_inv.total == Decimal("7.01")
    assert customer_inv.bill_to["name"] == "Customer SARL"
    assert customer_inv.bill_from["name"] == "Resell Ltd"
    assert UsageRecord.objects.filter(line__isnull=False).count() == 5
    # Again: nothing new, and collecting again keeps the billed rows.
    assert run(admin) == []
    assert UsageRecord.objects.filter(line__isnull=False).count() == 5
    issued = AuditEntry.objects.filter(action="invoice.issue")
    assert {e.object_id for e in issued} == {str(mallory_inv.uuid), str(customer_inv.uuid)}
    assert {e.owner_id for e in issued} == {mallory.pk, customer.pk}


def test_a_country_without_a_tax_rate_pays_the_issuers_rate_not_zero(
    world, mallory, customer, admin_user
):
    """Regression: a customer-set country with no TaxRate (any code matched [A-Z]{2}) was
    billed at 0 %. Unassigned codes are refused; a real one without a rate pays the
    issuer's own country's rate."""
    from billing.models import BillingProfile

    with pytest.raises(ValidationError):
        BillingProfile(user=mallory, country="XX").full_clean()
    with pytest.raises(ValidationError):
        services.do_update_profile(
            services.profile_of(mallory), actor=mallory, data={"country": "XX"}
        )
    services.do_update_profile(services.profile_of(mallory), actor=mallory, data={"country": "SE"})
    customer_inv, mallory_inv = run(admin_user)
    assert (mallory_inv.tax_country, mallory_inv.tax_rate) == ("SE", Decimal("19.00"))
    assert mallory_inv.tax_total == Decimal("9.58")
    assert customer_inv.tax_rate == Decimal("20.00")  # FR has its own
    assert services.tax_for("SE", {}, default_country="") == (Decimal("0.00"), "")


def test_the_audit_chain_still_verifies_after_a_bulk_issue(world, admin_user):
    from core.audit import verify_chain

    run(admin_user)
    assert verify_chain()[1] is None


def test_credit_note_and_void(world, admin_user, billing_user, customer):
    _customer_inv, mallory_inv = run(admin_user)
    with pytest.raises(PermissionDenied):
        services.do_create_credit_note(mallory_inv, actor=customer, reason="no")
    note = services.do_create_credit_note(
        mallory_inv, actor=billing_user, amount=Decimal("10.00"), reason="outage", send=False
    )
    assert note.kind == Invoice.Kind.CREDIT_NOTE and note.number == "CN-000001"
    assert note.total == Decimal("11.90") and note.credits_id == mallory_inv.pk
    mallory_inv.refresh_from_db()
    assert mallory_inv.balance == Decimal("59.98") - Decimal("11.90")
    with pytest.raises(ValidationError):  # more than is left
        services.do_create_credit_note(
            mallory_inv, actor=billing_user, amount=Decimal("41.00"), reason="x"
        )
    with pytest.raises(ValidationError):
        services.do_void_invoice(mallory_inv, actor=billing_user, reason="")
    services.do_void_invoice(_customer_inv, actor=billing_user, reason="wrong plan")
    _customer_inv.refresh_from_db()
    assert _customer_inv.state == Invoice.State.VOID and _customer_inv.number == "INV-000001"
    # Its usage is free to be billed again; the new invoice takes the next number.
    again = services.issue_period(OCTOBER, actor=admin_user, send=False)
    assert Invoice.objects.get(pk=again[0]).number == "INV-000002"


def test_manual_payment_settles_and_emits_paid(world, admin_user, billing_user, customer):
    _c, invoice = run(admin_user)
    with pytest.raises(PermissionDenied):
        services.do_record_manual_payment(invoice, actor=customer, data={"amount": "1"})
    with pytest.raises(ValidationError):
        services.do_record_manual_payment(invoice, actor=billing_user, data={"amount": "100"})
    with pytest.raises(ValidationError):
        services.do_record_manual_payment(
            invoice, actor=billing_user, data={"amount": "1", "state": "succeeded"}
        )
    services.do_record_manual_payment(
        invoice, actor=billing_user, data={"amount": "50", "external_id": "BANK-1"}
    )
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.ISSUED and invoice.balance == Decimal("9.98")
    with pytest.raises(ValidationError):  # the same bank reference twice
        services.do_record_manual_payment(
            invoice, actor=billing_user, data={"amount": "1", "external_id": "BANK-1"}
        )
    services.do_record_manual_payment(invoice, actor=billing_user, data={"amount": "9.98"})
    invoice.refresh_from_db()
    assert invoice.state == Invoice.State.PAID and invoice.paid_at
    assert Payment.objects.filter(invoice=invoice, recorded_by=billing_user).count() == 2
    assert AuditEntry.objects.filter(action="invoice.paid", object_id=str(invoice.uuid)).exists()
    assert EventType.INVOICE_PAID == "invoice.paid"


@pytest.mark.django_db(transaction=True)
def test_numbers_stay_gapless_under_concurrent_issuers(admin_user, customer):
    """Eight threads each issue drafts at once: every number is taken exactly once."""
    drafts = []
    for _ in range(16):
        invoice = Invoice.objects.create(customer=customer, issuer=None, currency="EUR")
        invoice.lines.create(description="x", amount=Decimal("1.00"))
        drafts.append(invoice)
    errors = []

    def issue(chunk):
        try:
            for invoice in chunk:
                services.do_issue_invoice(invoice, actor=admin_user, send=False)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=issue, args=(drafts[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs = sorted(Invoice.objects.values_list("seq", flat=True))
    assert seqs == list(range(1, 17))
    assert InvoiceSequence.objects.get(key="panel:invoice").last == 16
