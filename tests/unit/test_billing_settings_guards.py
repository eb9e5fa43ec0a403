"""Billing settings and tax rates guarded in the services themselves (whoever calls them:
portal, API, admin, shell), prices never negative, and two first saves of a reseller's
settings at once answered with a clear error instead of a crash."""

from __future__ import annotations

from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from billing import services
from billing.models import BillingSettings, TaxRate
from tests.conftest import login

pytestmark = pytest.mark.django_db


def test_a_negative_price_is_refused_by_field(reseller):
    client = login(reseller)
    page = client.get("/billing/settings/")
    assert page.status_code == 200
    data = {
        name: ("" if value is None else value)
        for name, value in page.context["form"].initial.items()
        if name in services.SETTINGS_FIELDS
    }
    data.update(extra_ip_price="-5", legal_name="Resell Ltd")
    resp = client.post("/billing/settings/", data)
    assert resp.status_code == 400
    assert "extra_ip_price" in resp.context["form"].errors
    assert not BillingSettings.objects.filter(issuer=reseller).exists()


def test_services_ask_the_policy_themselves(customer, reseller, support, billing_user):
    panel = BillingSettings.objects.create(issuer=None, legal_name="Panel")
    for user in (customer, reseller, support):
        with pytest.raises(PermissionDenied):
            services.do_update_settings(panel, actor=user, data={"legal_name": "Mine"})
        with pytest.raises(PermissionDenied):
            services.do_create_tax_rate(actor=user, data={"country": "DE", "rate": "19"})
    assert BillingSettings.objects.get(pk=panel.pk).legal_name == "Panel"
    rate = services.do_create_tax_rate(actor=billing_user, data={"country": "DE", "rate": "19"})
    for user in (customer, reseller, support):
        with pytest.raises(PermissionDenied):
            services.do_update_tax_rate(rate, actor=user, data={"rate": "0"})
        with pytest.raises(PermissionDenied):
            services.do_delete_tax_rate(rate, actor=user)
    assert TaxRate.objects.get(pk=rate.pk).rate == Decimal("19")
    # A reseller makes its own row, never one for another issuer.
    own = BillingSettings(issuer=reseller, legal_name="Resell")
    services.do_update_settings(own, actor=reseller, data={"legal_name": "Resell Ltd"})
    assert BillingSettings.objects.get(issuer=reseller).legal_name == "Resell Ltd"
    with pytest.raises(PermissionDenied):
        services.do_update_settings(
            BillingSettings(issuer=customer), actor=reseller, data={"legal_name": "x"}
        )


def test_two_first_saves_at_once_give_a_clear_error(reseller):
    first = BillingSettings(issuer=reseller)
    services.do_update_settings(first, actor=reseller, data={"legal_name": "A"})
    second = BillingSettings(issuer=reseller)  # loaded before the first save committed
    # In a real race both pass validation; the unique constraint refuses the second.
    raced = mock.patch.object(BillingSettings, "full_clean")
    with raced, pytest.raises(ValidationError, match="saved meanwhile"):
        services.do_update_settings(second, actor=reseller, data={"legal_name": "B"})
    assert BillingSettings.objects.get(issuer=reseller).legal_name == "A"
