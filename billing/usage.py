"""Usage collection: what every account used in one period, from the other apps' data.

One pass per kind over all accounts (grouped queries, never a query per account), written
as ``UsageRecord`` rows. Idempotent: running it again for a period replaces the rows not
billed yet with freshly measured ones and leaves billed rows alone, so the result of two
runs is the result of the last one.

Sources:
- ``website_plan``: the hosting subscription, as the fraction of the period it existed
  (from ``Subscription.created_at``);
- ``disk_gb``: the account's measured disk (``SystemAccount.disk_used_mb``, all servers),
  against the plan's ``disk_mb``;
- ``bandwidth_gb``: the month's ``SiteTraffic`` of its websites (10^9 bytes a GB), against
  the plan's ``bandwidth_gb``;
- ``vps_hours``: per VPS, hours from its creation (or the period's start) to its deletion
  (the ``vps.delete`` audit entry) or the period's end or now, at its plan;
- ``mailboxes``, ``databases``: counted now, against the plan's limits;
- ``extra_ips``: the addresses an account's VPSes hold beyond their plans' ``ip_count``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from billing.models import UsageKind, UsageRecord
from core import audit
from core.bulk import insert_rows

HOURS = Decimal("0.0001")
GB = Decimal(10**9)


@dataclass(frozen=True)
class BillingPeriod:
    start: date  # the first day
    end: date  # the first day after

    @classmethod
    def month_of(cls, day: date) -> BillingPeriod:
        start = day.replace(day=1)
        days = calendar.monthrange(start.year, start.month)[1]
        return cls(start, start + timedelta(days=days))

    @classmethod
    def parse(cls, text: str) -> BillingPeriod:
        """``YYYY-MM``."""
        year, month = (int(part) for part in text.split("-"))
        return cls.month_of(date(year, month, 1))

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}"

    def bounds(self) -> tuple[datetime, datetime]:
        tz = timezone.get_current_timezone()
        return (
            datetime.combine(self.start, time.min, tzinfo=tz),
            datetime.combine(self.end, time.min, tzinfo=tz),
        )

    @property
    def hours(self) -> Decimal:
        return Decimal((self.end - self.start).days * 24)


def _q(value) -> Decimal:
    return Decimal(value).quantize(HOURS, rounding=ROUND_HALF_UP)


def collect_usage(period: BillingPeriod, *, actor=None, accounts=None) -> int:
    """Measure ``period`` for every account (or the given queryset of accounts) and write
    its usage records; returns how many were written."""
    now = timezone.now()
    users = get_user_model().objects.all() if accounts is None else accounts
    user_ids = users.values("pk")
    rows: list[UsageRecord] = []
    rows += _website_plans(period, user_ids)
    rows += _disk(period, user_ids)
    rows += _bandwidth(period, user_ids)
    rows += _vps_hours(period, user_ids, now)
    rows += _counted(period, user_ids)
    rows += _extra_ips(period, user_ids)
    with transaction.atomic():
        current = UsageRecord.objects.filter(period_start=period.start, account__in=user_ids)
        billed = set(
            current.filter(line__isnull=False).values_list(
                "account_id", "kind", "source_type", "source_id"
            )
        )
        current.filter(line__isnull=True).delete()
        rows = [r for r in rows if (r.account_id, r.kind, r.source_type, r.source_id) not in billed]
        fields = [
            "account", "period_start", "period_end", "kind", "quantity", "included",
            "source_type", "source_id", "description", "plan_type", "plan_id", "collected_at",
        ]  # fmt: skip
        insert_rows(
            UsageRecord,
            fields,
            [
                [
                    r.account_id,
                    period.start,
                    period.end,
                    r.kind,
                    r.quantity,
                    r.included,
                    r.source_type,
                    r.source_id,
                    r.description,
                    r.plan_type,
                    r.plan_id,
                    now,
                ]  # fmt: skip
                for r in rows
            ],
        )
        audit.record(
            "billing.usage.collect",
            actor=actor,
            object_type="billing.usagerecord",
            object_label=period.label,
            changes={"period": [None, period.label], "records": [None, len(rows)]},
        )
    return len(rows)


def _record(account_id, kind, quantity, **extra) -> UsageRecord:
    return UsageRecord(account_id=account_id, kind=kind, quantity=_q(quantity), **extra)


def _subscriptions(user_ids) -> dict[int, tuple]:
    from websites.models import Subscription

    rows = Subscription.objects.filter(user__in=user_ids).values_list(
        "user_id", "plan_id", "plan__name", "plan__disk_mb", "plan__bandwidth_gb",
        "plan__mailboxes", "plan__databases", "created_at",
    )  # fmt: skip
    return {row[0]: row[1:] for row in rows}


def _website_plans(period: BillingPeriod, user_ids) -> list[UsageRecord]:
    start, end = period.bounds()
    out = []
    days = Decimal((period.end - period.start).days)
    for user_id, (plan_id, name, *_, created_at) in _subscriptions(user_ids).items():
        if created_at >= end:
            continue
        active_from = max(created_at, start)
        fraction = min(Decimal(1), Decimal((end - active_from).days) / days)
        if created_at <= start:
            fraction = Decimal(1)
        out.append(
            _record(
                user_id,
                UsageKind.WEBSITE_PLAN,
                fraction,
                included=Decimal(0),
                source_type="websites.subscription",
                source_id=str(user_id),
                description=f"Hosting plan {name}",
                plan_type="websites.plan",
                plan_id=plan_id,
            )
        )
    return out


def _disk(period: BillingPeriod, user_ids) -> list[UsageRecord]:
    from websites.models import SystemAccount

    subs = _subscriptions(user_ids)
    used = (
        SystemAccount.objects.filter(user__in=user_ids, disk_used_mb__isnull=False)
        .values("user_id")
        .annotate(mb=Sum("disk_used_mb"))
        .values_list("user_id", "mb")
    )
    out = []
    for user_id, mb in used:
        sub = subs.get(user_id)
        limit = sub[2] if sub else None
        out.append(
            _record(
                user_id,
                UsageKind.DISK_GB,
                Decimal(mb) / 1024,
                included=_q(Decimal(limit) / 1024) if limit is not None else Decimal(0),
                description="Disk (GB)",
                plan_type="websites.plan" if sub else "",
                plan_id=sub[0] if sub else None,
            )
        )
    return out


def _bandwidth(period: BillingPeriod, user_ids) -> list[UsageRecord]:
    from websites.models import SiteTraffic

    subs = _subscriptions(user_ids)
    sent = (
        SiteTraffic.objects.filter(website__owner__in=user_ids, month=period.start)
        .values("website__owner_id")
        .annotate(total=Sum("bytes"))
        .values_list("website__owner_id", "total")
    )
    out = []
    for user_id, total in sent:
        sub = subs.get(user_id)
        limit = sub[3] if sub else None
        out.append(
            _record(
                user_id,
                UsageKind.BANDWIDTH_GB,
                Decimal(total) / GB,
                included=Decimal(limit) if limit is not None else Decimal(0),
                description="Bandwidth (GB)",
                plan_type="websites.plan" if sub else "",
                plan_id=sub[0] if sub else None,
            )
        )
    return out


def _vps_hours(period: BillingPeriod, user_ids, now: datetime) -> list[UsageRecord]:
    from core.models import AuditEntry
    from vps.models import Vps

    start, end = period.bounds()
    vpses = list(
        Vps.objects.filter(owner__in=user_ids, created_at__lt=end)
        .exclude(state=Vps.State.PENDING, created_at__lt=start)
        .values_list(
            "pk", "uuid", "owner_id", "plan_id", "plan__name", "hostname", "created_at", "state"
        )
    )
    deleted_uuids = [str(v[1]) for v in vpses if v[7] in (Vps.State.DELETED, Vps.State.DELETING)]
    deleted_at: dict[str, datetime] = {}
    if deleted_uuids:
        for object_id, when in AuditEntry.objects.filter(
            action="vps.delete", object_type="vps.vps", object_id__in=deleted_uuids
        ).values_list("object_id", "created_at"):
            deleted_at[object_id] = min(when, deleted_at.get(object_id, when))
    out = []
    for _pk, uid, owner_id, plan_id, plan_name, hostname, created_at, _state in vpses:
        stop = min(end, now, deleted_at.get(str(uid), end))
        begin = max(start, created_at)
        if stop <= begin:
            continue
        hours = Decimal((stop - begin).total_seconds()) / 3600
        out.append(
            _record(
                owner_id,
                UsageKind.VPS_HOURS,
                hours,
                source_type="vps.vps",
                source_id=str(uid),
                description=f"VPS {hostname} ({plan_name})",
                plan_type="vps.vpsplan",
                plan_id=plan_id,
            )
        )
    return out


def _counted(period: BillingPeriod, user_ids) -> list[UsageRecord]:
    from mail.models import Mailbox
    from websites.databases.models import CustomerDatabase

    subs = _subscriptions(user_ids)
    out = []
    counts = [
        (
            UsageKind.MAILBOXES,
            Mailbox.objects.filter(domain__owner__in=user_ids)
            .values("domain__owner_id")
            .annotate(n=Count("pk"))
            .values_list("domain__owner_id", "n"),
            4,
        ),
        (
            UsageKind.DATABASES,
            CustomerDatabase.objects.filter(owner__in=user_ids)
            .values("owner_id")
            .annotate(n=Count("pk"))
            .values_list("owner_id", "n"),
            5,
        ),
    ]
    for kind, rows, limit_at in counts:
        for user_id, n in rows:
            sub = subs.get(user_id)
            limit = sub[limit_at - 1] if sub else None
            out.append(
                _record(
                    user_id,
                    kind,
                    n,
                    included=Decimal(limit) if limit is not None else Decimal(n),
                    description=UsageKind(kind).label,
                    plan_type="websites.plan" if sub else "",
                    plan_id=sub[0] if sub else None,
                )
            )
    return out


def _extra_ips(period: BillingPeriod, user_ids) -> list[UsageRecord]:
    """IPv4 addresses beyond each VPS's plan (the plan's IPv6 address is not counted)."""
    from vps.models import IpAddress

    rows = (
        IpAddress.objects.filter(vps__owner__in=user_ids)
        .exclude(vps__state="deleted")
        .values_list("vps_id", "vps__owner_id", "vps__plan__ip_count", "address")
    )
    held: dict[int, list] = {}
    for vps_id, owner_id, included, address in rows:
        if ":" not in address:
            entry = held.setdefault(vps_id, [owner_id, included, 0])
            entry[2] += 1
    extra: dict[int, int] = {}
    for owner_id, included, n in held.values():
        if n > included:
            extra[owner_id] = extra.get(owner_id, 0) + n - included
    return [
        _record(user_id, UsageKind.EXTRA_IPS, n, description="Extra IP addresses")
        for user_id, n in extra.items()
    ]
