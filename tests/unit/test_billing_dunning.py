"""Dunning's bookkeeping for VPSes and mailboxes (the website path runs against real nginx in
tests/integration/test_billing_dunning.py): what it suspends, through which Operations, and
that only what it suspended comes back, and only once nothing suspended for is due."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import dunning, services, tasks
from billing.models import BillingSettings, Invoice
from billing.payment_models import DunningStep, DunningSuspension
from core.models import Operation
from core.schedules import declared
from mail.models import Mailbox, MailDomain
from servers.models import Server
from vps.models import Hypervisor, Vps, VpsPlan

pytestmark = pytest.mark.django_db
HASH = "{SHA512-CRYPT}$6$s$" + "x" * 86


@pytest.fixture
def account(admin_user, customer):
    BillingSettings.objects.update_or_create(
        issuer=None, defaults={"due_days": 0, "reminder_days": "", "suspend_after_days": 10}
    )
    server = Server.objects.create(name="d", address="93.184.216.34", owner=admin_user)
    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    plan = VpsPlan.objects.create(name="d")
    running = Vps.objects.create(
        hostname="run", owner=customer, plan=plan, hypervisor=hv, state=Vps.State.RUNNING
    )
    stopped = Vps.objects.create(
        hostname="off", owner=customer, plan=plan, hypervisor=hv, state=Vps.State.STOPPED
    )
    domain = MailDomain.objects.create(domain="dun.example.com", server=server, owner=customer)
    box = Mailbox.objects.create(domain=domain, local_part="info", password_hash=HASH)
    staff_box = Mailbox.objects.create(
        domain=domain, local_part="spam", password_hash=HASH, suspended=True
    )
    draft = Invoice.objects.create(customer=customer, currency="EUR")
    draft.lines.create(description="VPS", amount=Decimal("5.00"))
    services.do_issue_invoice(draft, actor=admin_user, send=False)
    draft.refresh_from_db()
    return {"invoice": draft, "running": running, "stopped": stopped, "box": box,
            "staff_box": staff_box}  # fmt: skip


def test_vps_and_mailboxes_suspended_and_only_those_lifted(account, admin_user):
    invoice = account["invoice"]
    assert dunning.run(today=invoice.due_date + timedelta(days=9))["suspended"] == 0
    # Both mailboxes are held: the staff-suspended one too (its owner-side flag is not ours).
    assert dunning.run(today=invoice.due_date + timedelta(days=10))["suspended"] == 4
    running, stopped = account["running"], account["stopped"]
    running.refresh_from_db()
    stopped.refresh_from_db()
    assert running.state == stopped.state == Vps.State.SUSPENDED
    assert invoice.number in running.state_message
    kinds = set(Operation.objects.values_list("kind", flat=True))
    assert "vps.suspend" in kinds  # the domain is stopped by an Operation
    account["box"].refresh_from_db()
    assert account["box"].billing_hold and not account["box"].suspended
    # Nothing comes back while the invoice is due.
    assert dunning.run(today=invoice.due_date + timedelta(days=11))["reactivated"] == 0

    # Paid by hand: the frequent schedule lifts what dunning suspended, nothing else.
    services.do_record_manual_payment(invoice, actor=admin_user, data={"amount": "5.00"})
    assert tasks.reactivate_paid() == "4 reactivated"
    running.refresh_from_db()
    stopped.refresh_from_db()
    assert running.state == stopped.state == Vps.State.STOPPED
    assert Operation.objects.filter(kind="vps.start", target_id=str(running.uuid)).exists()
    assert not Operation.objects.filter(kind="vps.start", target_id=str(stopped.uuid)).exists()
    account["box"].refresh_from_db()
    account["staff_box"].refresh_from_db()
    assert not account["box"].billing_hold and not account["staff_box"].billing_hold
    assert account["staff_box"].suspended  # staff's suspension stays
    assert not DunningSuspension.objects.filter(lifted_at=None).exists()
    assert invoice.dunning_steps.filter(kind=DunningStep.Kind.REACTIVATE).exists()
    assert tasks.reactivate_paid() == "0 reactivated"


def test_a_credit_note_or_a_later_invoice_does_not_hold_a_paid_account(
    account, admin_user, customer
):
    """Regression: any issued invoice without suspension rows (a credit note stays issued,
    next month's is not due yet) kept a paying customer suspended."""
    invoice = account["invoice"]
    dunning.run(today=invoice.due_date + timedelta(days=10))
    services.do_credit_invoice(invoice, actor=admin_user, data={"amount": "1.00", "reason": "x"})
    later = Invoice.objects.create(customer=customer, currency="EUR")
    later.lines.create(description="next month", amount=Decimal("7.00"))
    later = services.do_issue_invoice(later, actor=admin_user, send=False)
    assert tasks.reactivate_paid() == "0 reactivated"  # the suspended invoice is unpaid
    invoice.refresh_from_db()
    services.do_record_manual_payment(
        invoice, actor=admin_user, data={"amount": str(invoice.balance)}
    )
    # Another regular invoice past due with a balance still holds the services.
    assert dunning.reactivate_if_settled(customer.pk, today=later.due_date + timedelta(1)) == 0
    assert tasks.reactivate_paid() == "4 reactivated"
    account["box"].refresh_from_db()
    assert not account["box"].billing_hold


def test_the_owner_cannot_clear_the_billing_hold(account, customer, admin_user):
    """Regression: the hold was the owner-editable ``suspended`` flag (PATCH or the edit
    form cleared it), and paying lifted a staff suspension."""
    from mail.apply import render_maps, render_users
    from tests.conftest import login

    invoice, box = account["invoice"], account["box"]
    dunning.run(today=invoice.due_date + timedelta(days=10))
    client = login(customer)
    url = f"/api/v1/mailboxes/{box.uuid}/"
    answer = client.patch(
        url, {"suspended": False, "billing_hold": False}, content_type="application/json"
    )
    assert answer.status_code == 200 and answer.json()["billing_hold"] is True
    client.post(f"/mail/mailboxes/{box.uuid}/", {"quota_mb": 9, "send_limit_per_hour": 300})
    box.refresh_from_db()
    assert box.billing_hold and box.quota_mb == 9
    # Rendered like a suspension: no login (Dovecot), no delivery (Postfix maps).
    users = render_users(box.domain, [box], "/var/vmail")
    assert "info@dun.example.com:" in users and "nologin" in users.split("info@")[1]
    maps = render_maps([box.domain], [box], [])
    assert "info@dun.example.com" not in maps["mailboxes"]
    services.do_record_manual_payment(invoice, actor=admin_user, data={"amount": "5.00"})
    tasks.reactivate_paid()
    box.refresh_from_db()
    assert not box.billing_hold and "nologin" not in render_users(box.domain, [box], "/v")


def test_services_created_after_suspension_are_suspended_the_next_day(
    account, admin_user, customer
):
    invoice, running = account["invoice"], account["running"]
    assert dunning.run(today=invoice.due_date + timedelta(days=10))["suspended"] == 4
    # Staff reactivate one by hand; the customer starts a new VPS and a new mailbox.
    Vps.objects.filter(pk=running.pk).update(state=Vps.State.RUNNING)
    late = Vps.objects.create(
        hostname="late", owner=customer, plan=running.plan, hypervisor=running.hypervisor,
        state=Vps.State.RUNNING,
    )  # fmt: skip
    box = Mailbox.objects.create(
        domain=account["box"].domain, local_part="late", password_hash=HASH
    )
    assert dunning.run(today=invoice.due_date + timedelta(days=11))["suspended"] == 2
    late.refresh_from_db()
    box.refresh_from_db()
    running.refresh_from_db()
    assert late.state == Vps.State.SUSPENDED and box.billing_hold
    assert running.state == Vps.State.RUNNING  # staff's choice is respected
    assert dunning.run(today=invoice.due_date + timedelta(days=12))["suspended"] == 0
    services.do_record_manual_payment(invoice, actor=admin_user, data={"amount": "5.00"})
    # Six holds end; five services come back (staff had restarted "run" already).
    assert tasks.reactivate_paid() == "5 reactivated"


def test_a_vps_staff_changed_meanwhile_is_left_alone(account, admin_user):
    invoice = account["invoice"]
    dunning.run(today=invoice.due_date + timedelta(days=10))
    running = account["running"]
    Vps.objects.filter(pk=running.pk).update(state_message="Expired: suspended until renewed.")
    services.do_record_manual_payment(invoice, actor=admin_user, data={"amount": "5.00"})
    tasks.reactivate_paid()
    running.refresh_from_db()
    assert running.state == Vps.State.SUSPENDED


def test_paid_or_void_invoices_are_not_dunned(account, admin_user):
    invoice = account["invoice"]
    services.do_void_invoice(invoice, actor=admin_user, reason="wrong")
    assert dunning.run(today=invoice.due_date + timedelta(days=30)) == {
        "reminders": 0, "suspended": 0, "reactivated": 0
    }  # fmt: skip


def test_schedules_are_declared():
    names = {r.name: r.minutes for r in declared()}
    assert names["panel:billing.dunning"] == 24 * 60
    assert names["panel:billing.reactivate_paid"] == 10


def test_dunning_queue_queries_stay_flat(account, admin_user, billing_user, customer):
    from django.urls import reverse

    from tests.conftest import login, queries_for

    invoice = account["invoice"]
    dunning.run(today=invoice.due_date + timedelta(days=10))
    client = login(billing_user)
    url = reverse("billing_dunning")
    one = queries_for(client, url)
    for n in range(3):
        draft = Invoice.objects.create(customer=customer, currency="EUR")
        draft.lines.create(description=f"x{n}", amount=Decimal("1.00"))
        services.do_issue_invoice(draft, actor=admin_user, send=False)
        DunningStep.objects.create(invoice=draft, kind=DunningStep.Kind.REMINDER)
    page = client.get(url)
    assert page.content.count(b'data-testid="dunning-row"') == 4
    assert queries_for(client, url) == one
