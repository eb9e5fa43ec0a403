"""The Stripe stand-in and the panel's Stripe account pointed at it, shared by the card
payment tests (tests/integration/conftest.py offers them to every integration test; a module
may define its own ``invoice``)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import services
from billing.models import Invoice
from billing.payment_models import StripeAccount
from tests.integration.stripe_standin import StripeStandIn

API_KEY = "sk_test_panel_standin"
WEBHOOK_SECRET = "whsec_panel_standin"
PUBLISHABLE_KEY = "pk_test_panel"


@pytest.fixture(scope="module")
def standin():
    server = StripeStandIn(
        api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, publishable_key=PUBLISHABLE_KEY
    ).start()
    yield server
    server.stop()


@pytest.fixture
def stripe_account(db, standin, settings):
    settings.PANEL_STRIPE_API_BASE = standin.url
    standin.events.clear()
    standin.drop_answers = 0
    return StripeAccount.objects.create(
        secret_key=API_KEY, webhook_secret=WEBHOOK_SECRET, publishable_key=PUBLISHABLE_KEY
    )


@pytest.fixture
def invoice(admin_user, customer, stripe_account):
    """An issued 12.50 EUR invoice of ``customer``, payable by card."""
    draft = Invoice.objects.create(customer=customer, currency="EUR", bill_to={"email": "c@x.t"})
    draft.lines.create(description="Hosting plan Gold", amount=Decimal("12.50"), position=0)
    services.do_issue_invoice(draft, actor=admin_user, send=False)
    draft.refresh_from_db()
    return draft
