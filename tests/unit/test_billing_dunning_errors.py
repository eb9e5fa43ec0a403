"""Dunning when something fails: one account's service that cannot be suspended or lifted
is logged and audited (``dunning.error``) and the others are still dunned; the steps say
what actually happened; a failing reactivation after a card payment is not an error page."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import dunning, payments, services, tasks
from billing.models import BillingSettings, Invoice
from billing.payment_models import DunningStep, DunningSuspension
from core.models import AuditEntry
from servers.models import Server
from tests.conftest import make_user
from vps.models import Hypervisor, Vps, VpsPlan

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts(admin_user):
    """Two customers, each with a running VPS and an overdue invoice."""
    BillingSettings.objects.update_or_create(
        issuer=None, defaults={"due_days": 0, "reminder_days": "", "suspend_after_days": 10}
    )
    server = Server.objects.create(name="e", address="93.184.216.34", owner=admin_user)
    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    plan = VpsPlan.objects.create(name="e")
    found = []
    for name in ("broken", "fine"):
        user = make_user(f"{name}@example.com", "customer")
        vps = Vps.objects.create(
            hostname=name, owner=user, plan=plan, hypervisor=hv, state=Vps.State.RUNNING
        )
        draft = Invoice.objects.create(customer=user, currency="EUR")
        draft.lines.create(description="VPS", amount=Decimal("5.00"))
        services.do_issue_invoice(draft, actor=admin_user, send=False)
        draft.refresh_from_db()
        found.append({"user": user, "vps": vps, "invoice": draft})
    return found


def failing_for(real, hostname: str):
    def act(obj, *args, **kwargs):
        if getattr(obj, "hostname", None) == hostname or (
            getattr(obj, "label", "").startswith(hostname)
        ):
            raise RuntimeError("libvirt is gone")
        return real(obj, *args, **kwargs)

    return act


def test_one_failing_suspension_does_not_stop_the_run(accounts, monkeypatch, caplog):
    broken, fine = accounts
    monkeypatch.setitem(
        dunning.SUSPEND,
        DunningSuspension.Service.VPS,
        failing_for(dunning.SUSPEND[DunningSuspension.Service.VPS], "broken"),
    )
    today = fine["invoice"].due_date + timedelta(days=10)
    assert dunning.run(today=today)["suspended"] == 1
    fine["vps"].refresh_from_db()
    broken["vps"].refresh_from_db()
    assert fine["vps"].state == Vps.State.SUSPENDED
    assert broken["vps"].state == Vps.State.RUNNING
    # Recorded as it happened: no "suspended" step (nor hold) for what was not suspended.
    assert not DunningSuspension.objects.filter(account=broken["user"]).exists()
    assert not broken["invoice"].dunning_steps.filter(kind=DunningStep.Kind.SUSPEND).exists()
    step = fine["invoice"].dunning_steps.get(kind=DunningStep.Kind.SUSPEND)
    assert step.detail == "suspended: vps fine"
    error = AuditEntry.objects.get(action="dunning.error")
    assert "broken" in error.changes["error"] and "libvirt is gone" in error.changes["error"]
    assert any(r.exc_info for r in caplog.records if "dunning" in r.getMessage())
    # Tried again the next day, once it works.
    monkeypatch.undo()
    assert dunning.run(today=today + timedelta(days=1))["suspended"] == 1
    broken["vps"].refresh_from_db()
    assert broken["vps"].state == Vps.State.SUSPENDED


def test_one_failing_lift_does_not_stop_the_others(accounts, monkeypatch, admin_user):
    broken, fine = accounts
    dunning.run(today=fine["invoice"].due_date + timedelta(days=10))
    for account in accounts:
        services.do_record_manual_payment(
            account["invoice"], actor=admin_user, data={"amount": "5.00"}
        )
    monkeypatch.setitem(
        dunning.LIFT,
        DunningSuspension.Service.VPS,
        failing_for(dunning.LIFT[DunningSuspension.Service.VPS], "broken"),
    )
    assert tasks.reactivate_paid() == "1 reactivated"  # no exception: the round goes on
    fine["vps"].refresh_from_db()
    assert fine["vps"].state == Vps.State.STOPPED  # and its start Operation
    step = fine["invoice"].dunning_steps.get(kind=DunningStep.Kind.REACTIVATE)
    assert step.detail.startswith("reactivated: vps fine")
    # The failed one stays held (tried again next round), with its error audited.
    assert DunningSuspension.objects.get(account=broken["user"]).lifted_at is None
    assert not broken["invoice"].dunning_steps.filter(kind=DunningStep.Kind.REACTIVATE).exists()
    assert AuditEntry.objects.filter(action="dunning.error").count() == 1
    monkeypatch.undo()
    assert tasks.reactivate_paid() == "1 reactivated"
    broken["vps"].refresh_from_db()
    assert broken["vps"].state == Vps.State.STOPPED


def test_reactivated_is_recorded_only_for_what_came_back(accounts, admin_user):
    _, fine = accounts
    dunning.run(today=fine["invoice"].due_date + timedelta(days=10))
    # Staff took the VPS over meanwhile (another reason): the lift leaves it alone.
    Vps.objects.filter(pk=fine["vps"].pk).update(state_message="Held by staff: abuse.")
    services.do_record_manual_payment(fine["invoice"], actor=admin_user, data={"amount": "5.00"})
    assert dunning.reactivate_if_settled(fine["user"].pk) == 0
    assert not fine["invoice"].dunning_steps.filter(kind=DunningStep.Kind.REACTIVATE).exists()
    assert DunningSuspension.objects.get(account=fine["user"]).lifted_at is not None
    release = AuditEntry.objects.get(action="invoice.dunning.release")
    assert "not reactivated" in release.changes["detail"]


def test_a_failing_reactivation_after_a_card_payment_is_not_an_error(
    accounts, monkeypatch, django_capture_on_commit_callbacks
):
    _, fine = accounts
    invoice = fine["invoice"]
    dunning.run(today=invoice.due_date + timedelta(days=10))

    def broken(account_id, today=None):
        raise RuntimeError("mail server gone")

    monkeypatch.setattr(dunning, "reactivate_if_settled", broken)
    with django_capture_on_commit_callbacks(execute=True):
        payment = payments.settle("pi_paid", invoice_uuid=str(invoice.uuid), amount=invoice.total)
    invoice.refresh_from_db()
    assert payment.state == "succeeded" and invoice.state == Invoice.State.PAID
