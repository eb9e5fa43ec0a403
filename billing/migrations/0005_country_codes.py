"""Country codes written before ``validate_country`` became strict (ISO 3166-1 alpha-2 in
capitals) are brought in line: surrounding spaces dropped, capitals, "UK" -> "GB" and the EU
VAT prefix "EL" -> "GR".

- ``BillingProfile.country``, ``BillingSettings.country``: mapped, or cleared when nothing
  maps (a profile then pays its issuer's country's rate; settings without a country are
  reported by the check ``billing.W002`` until someone sets one).
- ``TaxRate.country``: mapped when the mapped code is free. A rate that cannot be mapped, or
  whose code another rate already has ("uk" next to "GB"), is left as it was, never deleted:
  the rates can differ and only a person can tell which is right. The check ``billing.W001``
  (``manage.py check --database default``, also run by ``migrate``) lists such rates.
- ``Invoice.tax_country`` is what an issued invoice says: left alone.
"""

import logging

from django.db import migrations

# EU VAT prefixes and common aliases that are not ISO 3166 codes.
ALIASES = {"UK": "GB", "EL": "GR"}

log = logging.getLogger("billing.migrations")


def iso_code(value: str) -> str | None:
    """The ISO 3166 code ``value`` stands for, or None."""
    from billing.models import ISO_COUNTRIES

    code = (value or "").strip().upper()
    code = ALIASES.get(code, code)
    return code if code in ISO_COUNTRIES else None


def forwards(apps, schema_editor):
    for name in ("BillingProfile", "BillingSettings"):
        model = apps.get_model("billing", name)
        for pk, country in model.objects.exclude(country="").values_list("pk", "country"):
            mapped = iso_code(country) or ""
            if mapped != country:
                model.objects.filter(pk=pk).update(country=mapped)
                if not mapped:
                    log.warning(
                        "%s %s: country %r is not a country code, cleared", name, pk, country
                    )

    TaxRate = apps.get_model("billing", "TaxRate")  # noqa: N806
    rates = list(TaxRate.objects.order_by("pk").values_list("pk", "country"))
    taken = {country for _pk, country in rates if iso_code(country) == country}
    for pk, country in rates:
        mapped = iso_code(country)
        if mapped == country:
            continue
        if mapped is None or mapped in taken:
            why = "is not a country code" if mapped is None else f"would duplicate {mapped}"
            log.warning("TaxRate %s: country %r %s, left as it is", pk, country, why)
            continue
        TaxRate.objects.filter(pk=pk).update(country=mapped)
        taken.add(mapped)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_usage_samples")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
