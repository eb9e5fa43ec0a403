"""Dunning against real services: an overdue invoice gets its reminders (one per configured
day, by email), then the customer's website is suspended through its Operation (the real
nginx answers 503 with the suspension page), and paying by card (the Stripe stand-in)
brings it back, while a site staff suspended for another reason stays suspended."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from billing import cards, dunning, payments, services, stripe_client
from billing.models import BillingSettings, Invoice
from billing.payment_models import DunningStep, DunningSuspension, StripeAccount
from core.models import AuditEntry
from tests.conftest import login, make_user
from tests.integration.stripe_standin import StripeStandIn
from tests.integration.web_stack import WebStack, drop_user
from websites import services as website_services
from websites.models import Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST = "127.0.0.47"
EMAIL = "uhpdunn@example.com"  # account name "uhpdunn": a real Linux user during the tests
NAME = "uhpdunn"


@pytest.fixture(scope="module")
def stack():
    web = WebStack(HOST, NAME)
    yield web
    web.stop()


@pytest.fixture(scope="module")
def standin():
    server = StripeStandIn(api_key="sk_test_dunning", webhook_secret="whsec_dunning").start()
    yield server
    server.stop()


@pytest.fixture
def server(stack, admin_user):
    drop_user(NAME)
    subprocess.run(["rm", "-rf", str(stack.homes / NAME)], check=True)
    return stack.server(admin_user)


@pytest.fixture
def run_ops(q_sync, django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def overdue(admin_user, standin, settings):
    settings.PANEL_STRIPE_API_BASE = standin.url
    StripeAccount.objects.create(secret_key="sk_test_dunning", webhook_secret="whsec_dunning")
    BillingSettings.objects.update_or_create(
        issuer=None, defaults={"due_days": 0, "reminder_days": "3 7", "suspend_after_days": 21}
    )
    customer = make_user(EMAIL, "customer")
    draft = Invoice.objects.create(customer=customer, currency="EUR", bill_to={"email": EMAIL})
    draft.lines.create(description="Hosting plan", amount=Decimal("9.00"), position=0)
    services.do_issue_invoice(draft, actor=admin_user, send=False)
    draft.refresh_from_db()
    return draft


def page(stack, host: str) -> tuple[int, str]:
    """Status and body, error pages' bodies too (the suspension page is a 503)."""
    url = f"http://127.0.0.1:{stack.nginx.port}/"
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_reminders_suspension_and_reactivation_on_payment(
    stack, server, admin_user, billing_user, overdue, run_ops
):
    customer = overdue.customer
    due = overdue.due_date
    with run_ops():
        site = website_services.do_create_website(
            actor=admin_user,
            data={"domain": "dun.test", "server": server, "owner": customer, "kind": "static"},
        )
        other = website_services.do_create_website(
            actor=admin_user,
            data={"domain": "abuse.dun.test", "server": server, "owner": customer,
                  "kind": "static"},
        )  # fmt: skip
    stack.nginx.wait_for_status("dun.test", 200)
    with run_ops():
        website_services.do_suspend_website(other, actor=admin_user, reason="abuse")
    stack.nginx.wait_for_status("abuse.dun.test", 503)

    # Day 2: nothing. Day 3: the first reminder; again the same day: nothing more.
    assert dunning.run(today=due + timedelta(days=2))["reminders"] == 0
    assert dunning.run(today=due + timedelta(days=3))["reminders"] == 1
    assert dunning.run(today=due + timedelta(days=3))["reminders"] == 0
    assert len(mail.outbox) == 1 and overdue.number in mail.outbox[0].subject
    assert "3 days overdue" in mail.outbox[0].body
    assert dunning.run(today=due + timedelta(days=8))["reminders"] == 1
    overdue.refresh_from_db()
    assert overdue.reminders_sent == 2

    # Day 21: the account's services are suspended through their Operations.
    with run_ops():
        counts = dunning.run(today=due + timedelta(days=21))
    assert counts["suspended"] == 1  # the staff-suspended site is not dunning's
    site.refresh_from_db()
    assert site.suspended and site.status == "suspended", site.status_message
    status, text = page(stack, "dun.test")
    assert status == 503 and "This site is suspended" in text
    assert DunningSuspension.objects.filter(object_id=site.pk, lifted_at=None).exists()
    assert dunning.run(today=due + timedelta(days=22))["suspended"] == 0  # once
    kinds = list(overdue.dunning_steps.values_list("kind", flat=True))
    assert kinds == ["reminder", "reminder", "suspend"]
    assert AuditEntry.objects.filter(action="invoice.dunning.suspend").count() == 1
    assert AuditEntry.objects.filter(action="website.suspend", object_id=str(site.uuid)).exists()

    # The staff dunning queue shows it, with its steps; a customer cannot open the queue.
    queue = login(billing_user).get(reverse("billing_dunning"))
    assert queue.status_code == 200
    assert overdue.number.encode() in queue.content and b"dun.test" in queue.content
    assert login(customer).get(reverse("billing_dunning")).status_code == 404
    # The customer sees the steps on the invoice.
    shown = login(customer).get(overdue.get_absolute_url()).content
    assert b"Reminder sent" in shown and b"Services suspended" in shown

    # Paid by card: the site comes back by itself; the staff suspension stays.
    setup = cards.start_card_setup(customer, actor=customer)
    stripe_client.confirm_setup_intent(setup["setup_intent"], "pm_card_visa")
    cards.do_save_card(customer, actor=customer, setup_intent=setup["setup_intent"])
    with run_ops():
        payments.do_pay_invoice(overdue, actor=customer)
    overdue.refresh_from_db()
    assert overdue.state == Invoice.State.PAID
    stack.nginx.wait_for_status("dun.test", 200)
    site.refresh_from_db()
    assert not site.suspended
    assert stack.nginx.get("abuse.dun.test")[0] == 503
    assert Website.objects.get(pk=other.pk).suspension_reason == "abuse"
    assert not DunningSuspension.objects.filter(lifted_at=None).exists()
    assert overdue.dunning_steps.filter(kind=DunningStep.Kind.REACTIVATE).exists()
