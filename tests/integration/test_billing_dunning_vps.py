# ruff: noqa: F811 - the VPS test driver's fixtures are requested by name
"""Dunning against libvirt (its test driver, as the VPS tests use): a running VPS of an
account with an overdue invoice is held suspended and its domain stopped by an Operation;
the owner cannot start it; once the invoice is paid the reactivation schedule starts it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from billing import dunning, services, tasks
from billing.models import BillingSettings, Invoice
from core.models import Operation
from tests.integration.libvirt import image  # noqa: F401 - fixture
from tests.integration.test_vps_testdriver import _conn, hv, plan, run  # noqa: F401
from vps import services as vps_services
from vps.models import Vps

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_dunning_stops_a_vps_and_starts_it_when_paid(run, customer, hv, plan, image, admin_user):
    vps = run(
        vps_services.do_create_vps,
        actor=customer,
        data={"hostname": "dunned", "plan": plan, "image": image},
    )
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING
    BillingSettings.objects.update_or_create(
        issuer=None, defaults={"due_days": 0, "reminder_days": "", "suspend_after_days": 7}
    )
    draft = Invoice.objects.create(customer=customer, currency="EUR")
    draft.lines.create(description="VPS", amount=Decimal("4.00"))
    services.do_issue_invoice(draft, actor=admin_user, send=False)
    draft.refresh_from_db()

    run(dunning.run, today=draft.due_date + timedelta(days=7))
    vps.refresh_from_db()
    assert vps.state == Vps.State.SUSPENDED and draft.number in vps.state_message
    assert Operation.objects.get(kind="vps.suspend").state == "succeeded"
    assert not _conn().lookupByName(vps.domain_name).isActive()
    with pytest.raises(ValidationError):
        vps_services.do_power(vps, actor=customer, action="start")

    services.do_record_manual_payment(draft, actor=admin_user, data={"amount": "4.00"})
    assert run(tasks.reactivate_paid) == "1 reactivated"
    vps.refresh_from_db()
    start = Operation.objects.get(kind="vps.start", target_id=str(vps.uuid))
    assert start.state == "succeeded", start.error
    assert _conn().lookupByName(vps.domain_name).isActive()
    assert vps.state == Vps.State.RUNNING, vps.state_message
