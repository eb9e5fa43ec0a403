"""Who besides an entry's owner reads it, and hears the webhook event made from it: the
reseller the object's rules name when it is recorded (``core.policy.reseller_route``). An
invoice follows its issuer, so a panel invoice to a reseller's customer tells the reseller
nothing, and a reseller that issued an invoice hears of it after the customer has moved to
another reseller, which hears nothing of it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import services as billing
from billing.models import Invoice
from core import audit
from core.models import AuditEntry
from hooks import dispatch
from hooks import services as hooks
from hooks.models import Delivery, Event
from tests.conftest import login, make_user

pytestmark = pytest.mark.django_db

BILLING_EVENTS = ["invoice.issued", "invoice.paid"]
HOOK = {
    "name": "erp",
    "url": "https://hooks.example.com/in",
    "events": BILLING_EVENTS,
    "secret": "integrator-secret-0123456789",
}
INVOICE_ACTIONS = {"invoice.issue", "invoice.paid", "payment.record"}


@pytest.fixture(autouse=True)
def _public_example(monkeypatch):
    """hooks.example.com resolves to a public documentation address here, offline."""
    import socket

    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "hooks.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def issue(customer, issuer, admin_user) -> Invoice:
    """A draft issued by the panel's billing run's path (``_issue``), as an administrator."""
    draft = Invoice.objects.create(customer=customer, issuer=issuer, currency="EUR")
    draft.lines.create(description="plan", amount=Decimal("10.00"))
    return billing.do_issue_invoice(draft, actor=admin_user, send=False)


def pay(invoice, actor) -> None:
    billing.do_record_manual_payment(invoice, actor=actor, data={"amount": str(invoice.balance)})


def heard(user) -> set[str]:
    return set(Delivery.objects.filter(webhook__owner=user).values_list("event__type", flat=True))


def activity(user) -> set[str]:
    """The invoice and payment actions ``user`` reads on its activity page and in the API."""
    c = login(user)
    page = {e.action for e in c.get("/account/activity/").context["object_list"]}
    api = {e["action"] for e in c.get("/api/v1/audit/?limit=100").json()["results"]}
    assert page == api
    return page & INVOICE_ACTIONS


def test_a_panel_invoice_tells_the_customers_reseller_nothing(
    admin_user, reseller, customer, django_capture_on_commit_callbacks
):
    for who in (admin_user, reseller, customer):
        hooks.do_create_webhook(actor=who, data=HOOK)
    dispatch.dispatch()
    invoice = issue(customer, None, admin_user)
    pay(invoice, admin_user)
    dispatch.dispatch()
    assert set(Event.objects.values_list("type", flat=True)) == set(BILLING_EVENTS)
    assert not Event.objects.exclude(reseller_id=None).exists()
    assert heard(customer) == heard(admin_user) == set(BILLING_EVENTS)
    assert heard(reseller) == set()
    # Nor its activity page: the panel's invoice, its number, total and payment are not its.
    assert activity(customer) == INVOICE_ACTIONS
    assert activity(reseller) == set()


def test_the_issuer_hears_of_its_invoices_after_the_customer_moved(
    admin_user, reseller, customer, django_capture_on_commit_callbacks
):
    newcomer = make_user("newcomer@example.com", "reseller")
    for who in (reseller, newcomer):
        hooks.do_create_webhook(actor=who, data=HOOK)
    dispatch.dispatch()
    invoice = issue(customer, reseller, admin_user)
    customer.reseller = newcomer
    customer.save()
    pay(invoice, reseller)  # the issuer records the transfer it received
    dispatch.dispatch()
    assert set(Event.objects.values_list("reseller_id", flat=True)) == {reseller.pk}
    assert heard(reseller) == set(BILLING_EVENTS)
    assert heard(newcomer) == set()
    assert activity(reseller) == INVOICE_ACTIONS
    assert activity(newcomer) == set()


def test_other_entries_show_to_the_reseller_of_the_day(admin_user, reseller, customer):
    """Entries about what reaches a customer's reseller (its websites, its account) show to
    the reseller it had when they were recorded, not to the next one: they carry the first
    one's staff's addresses and emails."""
    audit.record("user.update", customer, actor=customer)
    newcomer = make_user("newcomer@example.com", "reseller")
    customer.reseller = newcomer
    customer.save()
    audit.record("user.update", customer, actor=admin_user, changes={"x": [1, 2]})
    first, second = AuditEntry.objects.filter(action="user.update").order_by("id")
    assert (first.reseller_id, second.reseller_id) == (reseller.pk, newcomer.pk)
    mine = {e.pk for e in login(reseller).get("/account/activity/").context["object_list"]}
    theirs = {e.pk for e in login(newcomer).get("/account/activity/").context["object_list"]}
    assert first.pk in mine and second.pk not in mine
    assert second.pk in theirs and first.pk not in theirs


def test_api_tokens_and_billing_profiles_stay_their_owners(reseller, customer):
    """Models whose rules do not reach the owner's reseller keep their entries from it."""
    from accounts import services as account_services

    account_services.do_create_token(customer, actor=customer, data={"name": "ci"})
    entry = AuditEntry.objects.get(object_type="accounts.apitoken")
    assert entry.owner_id == customer.pk and entry.reseller_id is None
    assert entry.pk not in {
        e.pk for e in login(reseller).get("/account/activity/").context["object_list"]
    }


def key(obj) -> str:
    return str(getattr(obj, "uuid", None) or obj.pk)


def test_bulk_entries_are_routed_like_single_ones(admin_user, reseller, customer):
    drafts = [
        Invoice.objects.create(customer=customer, issuer=issuer, currency="EUR")
        for issuer in (reseller, None)
    ]
    audit.record_many("invoice.issue", drafts)
    audit.record_many("user.touch", [customer, reseller])
    by_object = dict(AuditEntry.objects.values_list("object_id", "reseller_id"))
    assert by_object[str(drafts[0].uuid)] == reseller.pk
    assert by_object[str(drafts[1].uuid)] is None
    assert by_object[key(customer)] == reseller.pk and by_object[key(reseller)] is None
    assert audit.verify_chain()[1] is None


def test_the_reseller_column_is_outside_the_hash(customer):
    """Written after the fact (the migration fills it for older entries), it breaks no
    part of the chain."""
    entry = audit.record("user.update", customer, actor=customer)
    AuditEntry.objects.filter(pk=entry.pk).update(reseller_id=None)
    assert audit.verify_chain()[1] is None


def test_the_activity_page_stays_flat_for_a_reseller(admin_user, reseller, customer):
    c = login(reseller)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert c.get("/account/activity/").status_code == 200
        return len(ctx)

    issue(customer, reseller, admin_user)
    before = count()
    for _ in range(5):
        issue(customer, reseller, admin_user)
        audit.record("user.update", customer, actor=customer)
    assert count() == before


def test_the_migration_gives_older_entries_their_reseller(admin_user, reseller, customer):
    """Entries written before the column existed get what the rules say now: an invoice's
    issuer, nobody for a panel invoice or an API token, else the owner's reseller today."""
    import importlib

    from django.apps import apps

    from accounts import services as account_services

    migration = importlib.import_module("core.migrations.0007_audit_reseller")
    own = issue(customer, reseller, admin_user)
    panel = issue(customer, None, admin_user)
    audit.record("user.update", customer, actor=customer)
    account_services.do_create_token(customer, actor=customer, data={"name": "ci"})
    AuditEntry.objects.update(reseller_id=None)  # as the new column starts
    migration.backfill(apps, None)
    routed = dict(AuditEntry.objects.values_list("object_id", "reseller_id"))
    assert routed[str(own.uuid)] == reseller.pk
    assert routed[str(panel.uuid)] is None
    assert routed[key(customer)] == reseller.pk
    token_entry = AuditEntry.objects.get(object_type="accounts.apitoken")
    assert token_entry.owner_id == customer.pk and token_entry.reseller_id is None
