"""Billing rows a person has to fix: tax rates whose country is not an ISO 3166 code (left
by migration 0005 because mapping them would lose or duplicate a rate) and billing settings
without a valid country (their customers would be billed without tax).

Database checks: ``manage.py check --database default`` and ``migrate`` run them.
"""

from __future__ import annotations

from django.core.checks import Tags, Warning, register
from django.db import DatabaseError


@register(Tags.database)
def country_codes(app_configs=None, databases=None, **kwargs) -> list[Warning]:
    if not databases:
        return []
    from billing.models import ISO_COUNTRIES, BillingSettings, TaxRate

    try:
        rates = list(TaxRate.objects.exclude(country__in=ISO_COUNTRIES).order_by("pk"))
        issuers = list(
            BillingSettings.objects.exclude(country__in=ISO_COUNTRIES)
            .order_by("pk")
            .values_list("pk", "issuer_id", "country")
        )
    except DatabaseError:  # not migrated yet
        return []
    found = [
        Warning(
            f"Tax rate {rate.pk} ({rate.name} {rate.rate} %) has the country {rate.country!r}, "
            "which is not an ISO 3166 code: no customer is billed with it.",
            hint="Correct its country in the admin (Billing → Tax rates), or delete it if "
            "another rate already covers that country.",
            obj=f"billing.TaxRate {rate.pk}",
            id="billing.W001",
        )
        for rate in rates
    ]
    found += [
        Warning(
            f"Billing settings {pk} ({'the panel' if issuer is None else f'reseller {issuer}'}) "
            f"have the country {country!r}, which is not an ISO 3166 code: customers without "
            "a country of their own are billed without tax.",
            hint="Set the issuer's country in the admin (Billing → Billing settings).",
            obj=f"billing.BillingSettings {pk}",
            id="billing.W002",
        )
        for pk, issuer, country in issuers
    ]
    return found
