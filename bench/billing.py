"""Benchmark billing: rate a month of usage and issue its invoices for N accounts.

Seeds N customers (a twentieth of them under resellers, so both issuers number invoices),
each with a hosting plan, a website with the month's traffic, measured disk, and every
fourth a VPS with an extra address (every eighth VPS resized nine days in, so it is billed
at two plans); then times:

- sample_s: one day's usage samples of every account (billing.usage.sample_usage, the daily
  schedule); a sample for each day of the billed month is then seeded from it, so the
  collection below averages a whole month of samples;
- rate_s: collecting the month's usage and rating it (billing.usage, billing.rating);
- invoices_s: issuing every invoice (numbers, lines, audit entries; emails are sent by
  workers after commit and not timed here);
- invoice_list_ms: the staff invoice list (/billing/ as billing staff, median of 5);
- pdf_ms: one invoice's PDF (WeasyPrint, median of 3).

    .venv/bin/python bench/billing.py [--accounts 10000]

A fresh SQLite database in a temporary directory unless DATABASE_URL names an empty
PostgreSQL database. Last line: one JSON object. Goals: the whole run <= 60 s, the staff
invoice list < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
os.environ["PANEL_VAR_DIR"] = tempfile.mkdtemp(prefix="uhp-bench-billing-")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdefghij")
os.environ.setdefault("PANEL_ENCRYPTION_KEYS", "8rK3bTz3W0Hk1pVx0fYb3cFvHqYp9yq0Zl5H6mB2T3Q=")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("PANEL_AUDIT_KEYS", "bench-audit-key-not-for-production-5f2b9c1e7a4d")
os.environ["PANEL_DEBUG"] = "0"
os.environ["PANEL_SECURE"] = "0"
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

BATCH = 2000
RESELLER_SHARE = 20  # one account in 20 is a reseller's customer


def seed(n: int, period) -> None:
    from accounts.models import Role, User
    from billing.models import BillingSettings, TaxRate
    from servers.models import Server
    from vps.models import Hypervisor, IpAddress, IpPool, Vps, VpsPlan, VpsPlanSpan
    from websites.models import Plan, SiteTraffic, Subscription, SystemAccount, Website

    start = datetime.combine(period.start, datetime.min.time(), tzinfo=UTC)
    admin = User.objects.create_user("admin@bench.test", None, role=Role.ADMIN)
    User.objects.create_user("billing@bench.test", None, role=Role.BILLING)
    resellers = User.objects.bulk_create(
        User(email=f"r{i}@bench.test", role=Role.RESELLER, account_name=f"r{i}")
        for i in range(max(1, n // 500))
    )
    customers = User.objects.bulk_create(
        (
            User(
                email=f"c{i}@bench.test",
                role=Role.CUSTOMER,
                account_name=f"c{i}",
                reseller=resellers[i % len(resellers)] if i % RESELLER_SHARE == 0 else None,
            )
            for i in range(n)
        ),
        batch_size=BATCH,
    )
    BillingSettings.objects.create(issuer=None, country="DE", extra_ip_price=Decimal("2"))
    BillingSettings.objects.create(issuer=resellers[0], bandwidth_gb_price=Decimal("0.5"))
    TaxRate.objects.create(country="DE", rate=Decimal("19"))
    panel_plans = Plan.objects.bulk_create(
        Plan(name=f"P{i}", price=Decimal(5 * (i + 1)), disk_mb=2048, bandwidth_gb=10)
        for i in range(3)
    )
    reseller_plans = {
        r.pk: Plan.objects.create(name="R", owner=r, price=Decimal("7.50"), bandwidth_gb=5)
        for r in resellers
    }
    Subscription.objects.bulk_create(
        (
            Subscription(
                user=c,
                plan=reseller_plans[c.reseller_id] if c.reseller_id else panel_plans[i % 3],
                created_at=start - timedelta(days=30) if i % 7 else start + timedelta(days=9),
            )
            for i, c in enumerate(customers)
        ),
        batch_size=BATCH,
    )
    server = Server.objects.create(name="web", address="93.184.216.34", owner=admin)
    sites = Website.objects.bulk_create(
        (
            Website(domain=f"s{i}.bench.test", server=server, owner=c)
            for i, c in enumerate(customers)
        ),
        batch_size=BATCH,
    )
    SiteTraffic.objects.bulk_create(
        (
            SiteTraffic(website=s, month=period.start, bytes=(i % 40) * 10**9)
            for i, s in enumerate(sites)
        ),
        batch_size=BATCH,
    )
    SystemAccount.objects.bulk_create(
        (
            SystemAccount(server=server, user=c, name=c.account_name, disk_used_mb=(i % 30) * 100)
            for i, c in enumerate(customers)
        ),
        batch_size=BATCH,
    )
    hv_server = Server.objects.create(
        name="hv", address="198.51.100.10", transport="local", owner=admin
    )
    hv = Hypervisor.objects.create(
        server=hv_server, uri="test:///default", status="online", cpus=512,
        memory_mib=10**7, storage_gib=10**6,
    )  # fmt: skip
    vps_plan = VpsPlan.objects.create(name="S", price=Decimal("73.00"), ip_count=1)
    vpses = Vps.objects.bulk_create(
        (
            Vps(
                hostname=f"v{i}",
                owner=c,
                plan=vps_plan,
                hypervisor=hv,
                state="running",
                created_at=start + timedelta(hours=i % 500),
            )  # fmt: skip
            for i, c in enumerate(customers)
            if i % 4 == 0
        ),
        batch_size=BATCH,
    )
    # Plan history: each VPS's first span, and every eighth resized to M nine days in.
    bigger = VpsPlan.objects.create(name="M", price=Decimal("146.00"), ip_count=1)
    resized = vpses[::8]
    VpsPlanSpan.objects.bulk_create(
        [VpsPlanSpan(vps=v, plan=vps_plan, since=v.created_at) for v in vpses]
        + [
            VpsPlanSpan(vps=v, plan=bigger, since=max(v.created_at, start) + timedelta(days=9))
            for v in resized
        ],
        batch_size=BATCH,
    )
    Vps.objects.filter(pk__in=[v.pk for v in resized]).update(plan=bigger)
    pool = IpPool.objects.create(
        name="p", hypervisor=hv, network="10.0.0.0/8", gateway="10.0.0.1",
        first="10.0.0.10", last="10.255.255.250",
    )  # fmt: skip
    IpAddress.objects.bulk_create(
        (
            IpAddress(pool=pool, vps=v, address=f"10.{k // 65536}.{k // 256 % 256}.{k % 256}")
            for k, v in ((j + 10, v) for j, v in enumerate(vpses + vpses[::8]))
        ),
        batch_size=BATCH,
    )


def seed_samples(period) -> int:
    """Copy today's samples to every day of ``period`` (a month of the daily schedule)."""
    from django.db import transaction
    from django.utils import timezone

    from billing.models import UsageSample, UsageSampleDay
    from core.bulk import insert_rows

    today = list(
        UsageSample.objects.filter(day=timezone.localdate()).values_list(
            "account_id", "kind", "value"
        )
    )
    days = [period.start + timedelta(days=i) for i in range((period.end - period.start).days)]
    with transaction.atomic():
        UsageSampleDay.objects.bulk_create(UsageSampleDay(day=d, samples=len(today)) for d in days)
        insert_rows(
            UsageSample,
            ["account", "kind", "day", "value"],
            [[account, kind, d, value] for d in days for account, kind, value in today],
        )
    return len(today) * len(days)


def signed_in(email: str):
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    from accounts.devices import AuthenticatorDevice
    from accounts.models import User

    user = User.objects.get(email=email)
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    device = AuthenticatorDevice.objects.create(user=user, name="bench", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session["last_seen"] = int(time.time())
    session.save()
    return client


def median_ms(fn, runs: int) -> float:
    fn()  # warm
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10000)
    n = parser.parse_args().accounts
    call_command("migrate", verbosity=0)

    from billing import documents
    from billing.models import Invoice
    from billing.rating import rate_usage
    from billing.services import issue_period
    from billing.usage import BillingPeriod, collect_usage, sample_usage

    today = date.today()
    period = BillingPeriod.month_of(today.replace(day=1) - timedelta(days=1))
    t0 = time.monotonic()
    seed(n, period)
    print(f"seeded {n} accounts in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    t0 = time.monotonic()
    sampled = sample_usage()
    sample_s = time.monotonic() - t0
    month = seed_samples(period)
    print(f"{sampled} samples today, {month} seeded for {period.label}", file=sys.stderr)

    t0 = time.monotonic()
    collected = collect_usage(period)
    rated = rate_usage(period)
    rate_s = time.monotonic() - t0
    t0 = time.monotonic()
    issued = issue_period(period, send=False)
    invoices_s = time.monotonic() - t0
    print(f"{collected} records, {rated} rated, {len(issued)} invoices", file=sys.stderr)
    if len(issued) != n:
        raise SystemExit(f"expected {n} invoices, issued {len(issued)}")

    client = signed_in("billing@bench.test")

    def invoice_list():
        response = client.get("/billing/")
        if response.status_code != 200:
            raise SystemExit(f"/billing/: HTTP {response.status_code}")

    list_ms = median_ms(invoice_list, 5)
    invoice = Invoice.objects.order_by("-total").first()
    pdf_ms = median_ms(lambda: documents.render_pdf(invoice), 3)
    print(
        json.dumps(
            {
                "accounts": n,
                "sample_s": round(sample_s, 2),
                "rate_s": round(rate_s, 2),
                "invoices_s": round(invoices_s, 2),
                "invoice_list_ms": list_ms,
                "pdf_ms": pdf_ms,
            }
        )
    )


if __name__ == "__main__":
    main()
