"""Migration 0005 brings country codes written before validate_country became strict in
line: mapped where they can be (case, spaces, UK -> GB, EL -> GR), cleared on profiles and
settings where not, and tax rates that cannot be mapped (or would duplicate another) are
kept and reported by the check billing.W001, never lost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from billing.checks import country_codes

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("billing", "0004_usage_samples")]
AFTER = [("billing", "0005_country_codes")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_country_codes_are_mapped_cleared_or_kept_and_reported(
    admin_user, reseller, customer, mallory
):
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        old = _migrate(BEFORE)
        Settings = old.get_model("billing", "BillingSettings")  # noqa: N806
        Profile = old.get_model("billing", "BillingProfile")  # noqa: N806
        TaxRate = old.get_model("billing", "TaxRate")  # noqa: N806
        Invoice = old.get_model("billing", "Invoice")  # noqa: N806
        panel = Settings.objects.create(issuer_id=None, country="de")
        resold = Settings.objects.create(issuer_id=reseller.pk, country="XX")
        profiles = {
            user.pk: Profile.objects.create(user_id=user.pk, country=country).pk
            for user, country in [
                (admin_user, "uk"), (customer, "El"), (mallory, "zz"), (reseller, ""),
            ]
        }  # fmt: skip
        rates = {
            country: TaxRate.objects.create(country=country, rate=Decimal(rate)).pk
            for country, rate in [
                ("GB", "20"), ("uk", "17.5"), ("el", "24"), ("at", "20"), ("xx", "5"),
            ]
        }  # fmt: skip
        invoice = Invoice.objects.create(customer_id=mallory.pk, currency="EUR", tax_country="uk")

        new = _migrate(AFTER)
        Settings = new.get_model("billing", "BillingSettings")  # noqa: N806
        Profile = new.get_model("billing", "BillingProfile")  # noqa: N806
        TaxRate = new.get_model("billing", "TaxRate")  # noqa: N806
        Invoice = new.get_model("billing", "Invoice")  # noqa: N806
        assert Settings.objects.get(pk=panel.pk).country == "DE"
        assert Settings.objects.get(pk=resold.pk).country == ""
        got = dict(Profile.objects.values_list("user_id", "country"))
        assert got == {admin_user.pk: "GB", customer.pk: "GR", mallory.pk: "", reseller.pk: ""}
        assert set(got) == set(profiles)
        got = dict(TaxRate.objects.values_list("pk", "country"))
        assert got == {
            rates["GB"]: "GB",
            rates["uk"]: "uk",  # GB is taken: kept as it was, with its rate
            rates["el"]: "GR",
            rates["at"]: "AT",
            rates["xx"]: "xx",
        }
        assert TaxRate.objects.get(pk=rates["uk"]).rate == Decimal("17.5")
        assert Invoice.objects.get(pk=invoice.pk).tax_country == "uk"  # what it said

        warnings = country_codes(databases=["default"])
        assert sorted((w.id, w.obj) for w in warnings) == [
            ("billing.W001", f"billing.TaxRate {rates['uk']}"),
            ("billing.W001", f"billing.TaxRate {rates['xx']}"),
            ("billing.W002", f"billing.BillingSettings {resold.pk}"),
        ]
        assert "'uk'" in warnings[0].msg or "'uk'" in warnings[1].msg
        assert country_codes(databases=None) == []  # only with --database
    finally:
        _migrate(leaves)
