"""Rating: a price per unit and an amount (before tax) for every usage record not billed.

- hosting plans: the plan's monthly ``price`` times the fraction of the period held;
- VPS hours: the VPS plan's monthly ``price`` / 730 (the average hours of a month, 8760 /
  12) per hour, never more than 730 hours for one VPS in one period (so a VPS kept at one
  plan never costs more than its monthly price). A VPS resized in the period has a record
  per plan (billing.usage), each at its own plan's price; past 730 hours in all (a 31-day
  month) each plan's hours are scaled down alike;
- disk and bandwidth over the plan, extra IP addresses: the issuer's ``BillingSettings``
  prices per GB / address per month (0 by default: not charged). Disk and addresses are the
  period's daily average (billing.usage), so the price applies per GB-month and
  address-month: an address held for half the month costs half the monthly price;
- mailboxes and databases: included in the plan (shown against it, never charged).

Prices are those of the plan the account holds, so a reseller's customers are rated with
the reseller's plans and settings (the reseller issues their invoices). Re-rating a period
is harmless: only records without an invoice line are touched.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import BillingSettings, UsageKind, UsageRecord
from billing.usage import BillingPeriod
from core import audit
from core.bulk import update_rows

HOURS_PER_MONTH = Decimal(730)
CENT = Decimal("0.01")
UNIT = Decimal("0.000001")


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def settings_for(issuer_id: int | None, cache: dict | None = None) -> BillingSettings:
    """The issuer's settings; a reseller without its own gets the panel's (made on first
    use with the defaults)."""
    if cache is not None and issuer_id in cache:
        return cache[issuer_id]
    found = None
    if issuer_id is not None:
        found = BillingSettings.objects.filter(issuer_id=issuer_id).first()
    if found is None:
        found = BillingSettings.objects.filter(issuer__isnull=True).first()
        if found is None:
            found, _ = BillingSettings.objects.get_or_create(issuer=None)
    if cache is not None:
        cache[issuer_id] = found
    return found


def price_of(
    kind: str,
    q: Decimal,
    included: Decimal,
    plan_id,
    plans: dict,
    settings: BillingSettings,
    vps_hours: Decimal | None = None,
) -> tuple:
    """(unit price, amount) of one usage record. ``vps_hours``: for VPS hours, the VPS's
    hours in the period at all its plans (``q`` when it had one)."""
    if kind == UsageKind.WEBSITE_PLAN:
        unit = plans.get(("websites.plan", plan_id), Decimal(0))
        return unit, money(unit * q)
    if kind == UsageKind.VPS_HOURS:
        monthly = plans.get(("vps.vpsplan", plan_id), Decimal(0))
        unit = (monthly / HOURS_PER_MONTH).quantize(UNIT, rounding=ROUND_HALF_UP)
        total = q if vps_hours is None else max(vps_hours, q)
        billed = q if total <= HOURS_PER_MONTH else q * HOURS_PER_MONTH / total
        return unit, min(money(unit * billed), monthly)
    over = max(Decimal(0), q - included)
    if kind == UsageKind.DISK_GB:
        return settings.disk_gb_price, money(settings.disk_gb_price * over)
    if kind == UsageKind.BANDWIDTH_GB:
        return settings.bandwidth_gb_price, money(settings.bandwidth_gb_price * over)
    if kind == UsageKind.EXTRA_IPS:
        return settings.extra_ip_price, money(settings.extra_ip_price * q)
    return Decimal(0), Decimal("0.00")


def rate_usage(period: BillingPeriod, *, actor=None) -> int:
    """Price every unbilled record of ``period``; returns how many were rated."""
    from vps.models import VpsPlan
    from websites.models import Plan

    records = UsageRecord.objects.filter(period_start=period.start, line__isnull=True)
    plans = {("websites.plan", pk): price for pk, price in Plan.objects.values_list("pk", "price")}
    plans |= {("vps.vpsplan", pk): p for pk, p in VpsPlan.objects.values_list("pk", "price")}
    # Each VPS's hours in the period at all its plans (billed records too): one query.
    vps_hours = dict(
        UsageRecord.objects.filter(period_start=period.start, kind=UsageKind.VPS_HOURS)
        .values("source_id")
        .annotate(hours=Sum("quantity"))
        .values_list("source_id", "hours")
    )
    cache: dict = {}
    now = timezone.now()
    rows = []
    # Plain tuples, not model instances: thousands of records per run.
    for pk, kind, quantity, included, plan_id, source_id, reseller_id in records.values_list(
        "pk", "kind", "quantity", "included", "plan_id", "source_id", "account__reseller_id"
    ):
        settings = settings_for(reseller_id, cache)
        hours = vps_hours.get(source_id) if kind == UsageKind.VPS_HOURS else None
        unit, amount = price_of(kind, quantity, included, plan_id, plans, settings, hours)
        rows.append([unit, amount, now, pk])
    with transaction.atomic():
        update_rows(UsageRecord, "id", ["unit_price", "amount", "rated_at"], rows)
        audit.record(
            "billing.usage.rate",
            actor=actor,
            object_type="billing.usagerecord",
            object_label=period.label,
            changes={"period": [None, period.label], "records": [None, len(rows)]},
        )
    return len(rows)
