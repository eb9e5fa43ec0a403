"""Disk, mailboxes, databases and extra addresses are billed as the average of the period's
daily samples (billing.usage.sample_usage), not as one reading at collection."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import services
from billing.models import (
    BillingSettings,
    Invoice,
    TaxRate,
    UsageKind,
    UsageRecord,
    UsageSample,
    UsageSampleDay,
)
from billing.rating import money, rate_usage
from billing.usage import KEEP_SAMPLES_DAYS, BillingPeriod, collect_usage, sample_usage
from servers.models import Server
from tests.conftest import make_user
from websites.databases.models import CustomerDatabase, DatabaseServer
from websites.models import Plan, Subscription, SystemAccount

HASH = "{SHA512-CRYPT}$6$s$" + "x" * 86


def last_month() -> BillingPeriod:
    """A whole period before today (collecting samples today, never inside it)."""
    return BillingPeriod.month_of(timezone.localdate().replace(day=1) - timedelta(days=1))


def days_of(period: BillingPeriod) -> list[date]:
    return [period.start + timedelta(days=i) for i in range((period.end - period.start).days)]


def q(value) -> Decimal:
    return Decimal(value).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


@pytest.fixture
def world(db, admin_user, mallory):
    """mallory: the panel's customer on a plan with 1 GB of disk, 5 mailboxes and 3
    databases, subscribed long before last month."""
    server = Server.objects.create(name="web1", address="93.184.216.34", owner=admin_user)
    plan = Plan.objects.create(
        name="Big", price=Decimal("10.00"), disk_mb=1024, mailboxes=5, databases=3
    )
    start = datetime.combine(last_month().start, datetime.min.time(), tzinfo=UTC)
    Subscription.objects.create(user=mallory, plan=plan, created_at=start - timedelta(days=90))
    system = SystemAccount.objects.create(server=server, user=mallory, name="mallory")
    db_server = DatabaseServer.objects.create(
        name="db1", engine="mariadb", host="127.0.0.1", port=3306, admin_user="root"
    )
    return {"server": server, "plan": plan, "system": system, "db_server": db_server}


def mail_domain(world, owner, name="mail.example.test"):
    from mail.models import MailDomain

    return MailDomain.objects.create(domain=name, server=world["server"], owner=owner)


def add_mailboxes(domain, n: int, prefix="box") -> None:
    from mail.models import Mailbox

    for i in range(n):
        Mailbox.objects.create(domain=domain, local_part=f"{prefix}{i}", password_hash=HASH)


def record(account, kind) -> UsageRecord:
    return UsageRecord.objects.get(account=account, kind=kind, period_start=last_month().start)


def test_mailboxes_added_mid_month_count_for_the_days_held(world, mallory):
    period = last_month()
    days = days_of(period)
    half = len(days) // 2
    domain = mail_domain(world, mallory)
    for i, day in enumerate(days):
        if i == half:
            add_mailboxes(domain, 3)
        sample_usage(day)
    collect_usage(period)
    got = record(mallory, UsageKind.MAILBOXES)
    assert got.quantity == q(Decimal(3 * (len(days) - half)) / len(days))
    assert got.included == 5  # the plan's mailboxes (it used to show another limit)
    assert got.description == f"Mailboxes (average of {len(days)} days)"


def test_disk_and_databases_deleted_mid_month_count_until_then(world, mallory):
    period = last_month()
    days = days_of(period)
    for name in ("a", "b"):
        CustomerDatabase.objects.create(db_server=world["db_server"], owner=mallory, name=name)
    SystemAccount.objects.filter(pk=world["system"].pk).update(disk_used_mb=10 * 1024)
    for i, day in enumerate(days):
        if i == 10:
            SystemAccount.objects.filter(pk=world["system"].pk).update(disk_used_mb=0)
        if i == 20:
            CustomerDatabase.objects.filter(owner=mallory).delete()
        sample_usage(day)
    collect_usage(period)
    n = Decimal(len(days))
    assert record(mallory, UsageKind.DISK_GB).quantity == q(10 * 10 / n)
    assert record(mallory, UsageKind.DISK_GB).included == 1
    assert record(mallory, UsageKind.DATABASES).quantity == q(2 * 20 / n)
    assert record(mallory, UsageKind.DATABASES).included == 3
    # Nothing held today: the one-reading bill would have been zero for both.
    assert not UsageSample.objects.filter(day=days[-1], account=mallory).exists()


def test_the_average_is_over_the_sampled_days_only(world, mallory):
    """Days the sampler did not run (a fresh install, a stopped worker) are not counted as
    zero; a sampled day without a row for an account is."""
    period = last_month()
    days = days_of(period)[-10:]
    CustomerDatabase.objects.create(db_server=world["db_server"], owner=mallory, name="a")
    for i, day in enumerate(days):
        if i == 5:
            CustomerDatabase.objects.filter(owner=mallory).delete()
        sample_usage(day)
    collect_usage(period)
    got = record(mallory, UsageKind.DATABASES)
    assert got.quantity == Decimal("0.5")
    assert got.description == "Databases (average of 10 days)"


def test_sampling_twice_a_day_replaces_that_days_samples(world, mallory):
    day = days_of(last_month())[3]
    SystemAccount.objects.filter(pk=world["system"].pk).update(disk_used_mb=2048)
    assert sample_usage(day) == 1
    SystemAccount.objects.filter(pk=world["system"].pk).update(disk_used_mb=4096)
    CustomerDatabase.objects.create(db_server=world["db_server"], owner=mallory, name="a")
    assert sample_usage(day) == 2
    assert UsageSampleDay.objects.filter(day=day).count() == 1
    assert UsageSampleDay.objects.get(day=day).samples == 2
    got = dict(UsageSample.objects.filter(day=day).values_list("kind", "value"))
    assert got == {UsageKind.DISK_GB: 4, UsageKind.DATABASES: 1}
    # Collecting twice gives the same records.
    collect_usage(last_month())
    first = list(UsageRecord.objects.values_list("kind", "quantity").order_by("kind"))
    collect_usage(last_month())
    assert list(UsageRecord.objects.values_list("kind", "quantity").order_by("kind")) == first


def test_a_period_without_samples_is_billed_on_the_reading_at_collection(world, mallory):
    """Before the first sample (just after the upgrade) a period falls back to what is held
    at collection; the collection takes today's samples so the next period has readings."""
    SystemAccount.objects.filter(pk=world["system"].pk).update(disk_used_mb=3072)
    add_mailboxes(mail_domain(world, mallory), 2)
    assert not UsageSampleDay.objects.exists()
    collect_usage(last_month())
    disk = record(mallory, UsageKind.DISK_GB)
    assert (disk.quantity, disk.description) == (3, "Disk (GB)")
    assert record(mallory, UsageKind.MAILBOXES).quantity == 2
    today = timezone.localdate()
    assert UsageSampleDay.objects.filter(day=today).exists()
    assert set(UsageSample.objects.filter(day=today).values_list("kind", flat=True)) == {
        UsageKind.DISK_GB,
        UsageKind.MAILBOXES,
    }


def test_samples_older_than_thirteen_months_are_pruned(world, mallory):
    SystemAccount.objects.filter(pk=world["system"].pk).update(disk_used_mb=1024)
    old = timezone.localdate() - timedelta(days=KEEP_SAMPLES_DAYS + 1)
    kept = timezone.localdate() - timedelta(days=KEEP_SAMPLES_DAYS - 1)
    for day in (old, kept):
        UsageSampleDay.objects.create(day=day)
        UsageSample.objects.create(account=mallory, kind=UsageKind.DISK_GB, day=day, value=1)
    sample_usage()
    assert not UsageSample.objects.filter(day=old).exists()
    assert not UsageSampleDay.objects.filter(day=old).exists()
    assert UsageSample.objects.filter(day=kept).exists()


def _accounts(world, first: int, n: int) -> None:
    plan = world["plan"]
    for i in range(first, first + n):
        user = make_user(f"u{i}@example.com", "customer", account_name=f"acct{i}")
        Subscription.objects.create(user=user, plan=plan)
        SystemAccount.objects.create(
            server=world["server"], user=user, name=f"acct{i}", disk_used_mb=100 * (i + 1)
        )
        CustomerDatabase.objects.create(db_server=world["db_server"], owner=user, name=f"d{i}")
        add_mailboxes(mail_domain(world, user, f"m{i}.example.test"), 1)


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as queries:
        fn()
    return len(queries)


def test_sampling_and_collecting_take_as_many_queries_for_many_accounts(world):
    period = last_month()
    day = days_of(period)[0]
    _accounts(world, 0, 3)
    sample_usage()  # today: the collections below do not take it again
    sample_usage(day)  # the day's marker exists in both measurements
    few = (_queries(lambda: sample_usage(day)), _queries(lambda: collect_usage(period)))
    _accounts(world, 3, 30)
    many = (_queries(lambda: sample_usage(day)), _queries(lambda: collect_usage(period)))
    assert many == few
    assert UsageSample.objects.filter(day=day).count() == 33 * 3


def test_the_invoice_bills_disk_and_addresses_for_the_days_held(world, admin_user, mallory):
    """Disk over the plan at 1.00 per GB-month, extra addresses at 3.00 per address-month."""
    from vps.models import Hypervisor, IpAddress, IpPool, Vps, VpsPlan

    BillingSettings.objects.create(
        issuer=None, country="DE", disk_gb_price=Decimal("1.00"), extra_ip_price=Decimal("3.00")
    )
    TaxRate.objects.create(country="DE", rate=Decimal("19.00"))
    hv_server = Server.objects.create(
        name="hv", address="198.51.100.10", transport=Server.Transport.LOCAL, owner=admin_user
    )
    hv = Hypervisor.objects.create(server=hv_server, uri="test:///default", status="online")
    start = datetime.combine(last_month().start, datetime.min.time(), tzinfo=UTC)
    vps = Vps.objects.create(
        hostname="v1", owner=mallory, hypervisor=hv, state="running",
        plan=VpsPlan.objects.create(name="Free", price=Decimal("0"), ip_count=1),
        created_at=start - timedelta(days=60),
    )  # fmt: skip
    pool = IpPool.objects.create(
        name="p", hypervisor=hv, network="203.0.113.0/24", gateway="203.0.113.1",
        first="203.0.113.10", last="203.0.113.20",
    )  # fmt: skip
    ips = [IpAddress.objects.create(pool=pool, address=f"203.0.113.1{i}", vps=vps) for i in (0, 1)]
    SystemAccount.objects.filter(pk=world["system"].pk).update(disk_used_mb=4 * 1024)
    period = last_month()
    days = days_of(period)
    for i, day in enumerate(days):
        if i == len(days) - 10:  # the last ten days: 4 GB less, one address released
            SystemAccount.objects.filter(pk=world["system"].pk).update(disk_used_mb=0)
            IpAddress.objects.filter(pk=ips[1].pk).delete()
        sample_usage(day)
    collect_usage(period, actor=admin_user)
    rate_usage(period, actor=admin_user)
    (invoice_id,) = services.issue_period(period, actor=admin_user, send=False)
    invoice = Invoice.objects.get(pk=invoice_id)
    lines = {line.kind: line for line in invoice.lines.all()}
    n = Decimal(len(days))
    held = n - 10
    disk = q(4 * held / n)
    addresses = q(held / n)
    assert lines[UsageKind.DISK_GB].quantity == disk - 1
    assert lines[UsageKind.DISK_GB].amount == money(disk - 1)
    assert lines[UsageKind.DISK_GB].description == (
        f"Disk (GB, average of {len(days)} days) over the 1 included"
    )
    assert lines[UsageKind.EXTRA_IPS].quantity == addresses
    assert lines[UsageKind.EXTRA_IPS].amount == money(3 * addresses)
    assert set(lines) == {UsageKind.WEBSITE_PLAN, UsageKind.DISK_GB, UsageKind.EXTRA_IPS}
    assert invoice.subtotal == Decimal("10.00") + money(disk - 1) + money(3 * addresses)
