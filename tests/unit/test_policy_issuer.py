"""The policy's issuer rule (``Rules.issuer``/``issuer_may``): the reseller that issued an
invoice works it (payments, credit notes), whoever owns it; never the panel's invoices of its
customers nor another reseller's; the model-level answer is true for resellers only."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import (
    CREDIT,
    RECORD_PAYMENT,
    SEND,
    VOID,
    BillingProfile,
    BillingSettings,
    Invoice,
    InvoiceLine,
    Payment,
)
from billing.payment_models import DunningStep
from core.policy import (
    CHANGE,
    VIEW,
    annotate_permissions,
    collect_permissions,
    may,
    restrict,
    scope,
)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def issued(customer, issuer) -> Invoice:
    invoice = Invoice.objects.create(customer=customer, issuer=issuer, currency="EUR")
    invoice.lines.create(description="plan", amount=Decimal("10.00"))
    Invoice.objects.filter(pk=invoice.pk).update(state=Invoice.State.ISSUED, total=Decimal(10))
    invoice.refresh_from_db()
    Payment.objects.create(invoice=invoice, amount=Decimal("1.00"), currency="EUR")
    return invoice


@pytest.fixture
def world(reseller, customer, mallory):
    other = make_user("other-reseller@example.com", "reseller")
    theirs = make_user("theirs@example.com", "customer", reseller=other)
    return {
        "own": issued(customer, reseller),  # the reseller billed its customer
        "panel": issued(customer, None),  # the panel billed the same customer
        "other": issued(theirs, other),  # another reseller's
        "mallory": issued(mallory, None),
        "other_reseller": other,
    }


def test_the_issuer_works_its_invoices_only(world, reseller):
    assert list(restrict(Invoice, reseller, RECORD_PAYMENT)) == [world["own"]]
    assert list(restrict(Invoice, reseller, CREDIT)) == [world["own"]]
    assert list(restrict(Invoice, reseller, SEND)) == [world["own"]]
    assert not restrict(Invoice, reseller, VOID).exists()
    # It reads what it issued, not its customer's invoices from the panel.
    assert list(restrict(Invoice, reseller, VIEW)) == [world["own"]]


def test_a_moved_customer_does_not_show_the_new_reseller_the_old_invoices(
    world, reseller, customer
):
    """The review's case: another reseller takes the customer over; the invoices, lines,
    payments and dunning steps the first one issued stay its own."""
    newcomer = make_user("newcomer@example.com", "reseller")
    customer.reseller = newcomer
    customer.save()
    own = world["own"]
    DunningStep.objects.create(invoice=own, kind=DunningStep.Kind.REMINDER, days_overdue=3)
    assert restrict(DunningStep, reseller, VIEW).exists()
    for model in (Invoice, Payment, InvoiceLine, DunningStep):
        assert not restrict(model, newcomer, VIEW).exists(), model
    assert list(restrict(Invoice, reseller, VIEW)) == [own]
    # Nor does a reseller edit its customers' billing profiles (theirs alone).
    profile = BillingProfile.objects.create(user=customer, legal_name="C")
    assert not restrict(BillingProfile, newcomer, CHANGE).filter(pk=profile.pk).exists()
    assert restrict(BillingProfile, customer, CHANGE).filter(pk=profile.pk).exists()


def test_customers_and_other_resellers_get_nothing_from_the_issuer_rule(
    world, customer, mallory, support
):
    for user in (customer, mallory, support):
        assert not restrict(Invoice, user, RECORD_PAYMENT).exists()
    other = world["other_reseller"]
    assert list(restrict(Invoice, other, RECORD_PAYMENT)) == [world["other"]]
    # A customer's condition stays the owner column alone (no OR for the issuer).
    assert "issuer" not in str(scope(Invoice, customer, VIEW))


def test_the_issuer_keeps_its_invoices_after_the_customer_leaves(world, reseller, customer):
    customer.reseller = None
    customer.save()
    own = world["own"]
    assert list(restrict(Invoice, reseller, VIEW)) == [own]
    assert list(restrict(Invoice, reseller, RECORD_PAYMENT)) == [own]
    assert set(restrict(Payment, reseller, VIEW)) == set(own.payments.all())
    assert set(restrict(InvoiceLine, reseller, VIEW)) == set(own.lines.all())


def test_model_level_answers(reseller, customer, support, billing_user, admin_user):
    assert may(reseller, RECORD_PAYMENT, Invoice)
    assert may(reseller, CREDIT, Invoice)
    assert not may(reseller, VOID, Invoice)
    assert not may(customer, RECORD_PAYMENT, Invoice)
    assert not may(support, RECORD_PAYMENT, Invoice)
    assert may(billing_user, VOID, Invoice) and may(admin_user, VOID, Invoice)
    # A model without an issuer path gives resellers nothing beyond their owner rights.
    assert not may(reseller, RECORD_PAYMENT, BillingProfile)


def test_annotate_permissions_for_the_issuer(world, reseller):
    actions = (RECORD_PAYMENT, CREDIT, VOID)
    both = Invoice.objects.filter(pk__in=[world["own"].pk, world["panel"].pk])
    qs = annotate_permissions(both, reseller, actions)
    found = {}
    for invoice in qs:
        collect_permissions(invoice, actions)
        found[invoice.pk] = invoice.may
    assert found == {
        world["own"].pk: {RECORD_PAYMENT: True, CREDIT: True, VOID: False},
        world["panel"].pk: {RECORD_PAYMENT: False, CREDIT: False, VOID: False},
    }


def test_billing_settings_belong_to_their_issuer(reseller, customer, support, billing_user):
    panel = BillingSettings.objects.create()
    own = BillingSettings.objects.create(issuer=reseller)
    assert list(restrict(BillingSettings, reseller, CHANGE)) == [own]
    assert may(reseller, CHANGE, BillingSettings) and may(billing_user, CHANGE, BillingSettings)
    assert not may(customer, CHANGE, BillingSettings)
    assert not may(support, CHANGE, BillingSettings)
    assert not restrict(BillingSettings, customer, VIEW).exists()
    assert set(restrict(BillingSettings, billing_user, CHANGE)) == {panel, own}
