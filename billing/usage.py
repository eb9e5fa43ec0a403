"""Usage collection: what every account used in one period, from the other apps' data.

One pass per kind over all accounts (grouped queries, never a query per account), written
as ``UsageRecord`` rows. Idempotent: running it again for a period replaces the rows not
billed yet with freshly measured ones and leaves billed rows alone, so the result of two
runs is the result of the last one.

Sources:
- ``website_plan``: the hosting subscription, as the fraction of the period it existed
  (from ``Subscription.created_at``);
- ``disk_gb``: the account's measured disk (``SystemAccount.disk_used_mb``, all servers),
  against the plan's ``disk_mb``, as the average of the period's daily samples (below);
- ``bandwidth_gb``: the month's ``SiteTraffic`` of its websites (10^9 bytes a GB), against
  the plan's ``bandwidth_gb``;
- ``vps_hours``: per VPS and plan, hours from its creation (or the period's start) to its
  deletion (the ``vps.delete`` audit entry) or the period's end or now, split at each plan
  change (``vps.models.VpsPlanSpan``): a VPS resized mid-month has a record per plan;
- ``mailboxes``, ``databases``: counted, against the plan's limits, averaged as disk;
- ``extra_ips``: the addresses an account's VPSes hold beyond their plans' ``ip_count``,
  averaged as disk.

Daily samples: ``sample_usage`` (a daily schedule, and a collection that finds today not
sampled yet) stores what every account holds of disk, mailboxes, databases and extra
addresses (``UsageSample``, one row per account, kind and day, above zero only) and marks
the day sampled (``UsageSampleDay``). A period is billed the average over its sampled days
(a sampled day without a row counts as zero): 50 mailboxes held for 29 of 30 days are 48.33
mailbox-months, and added on the last day 1.67. A period without any sampled day (before
the first sample, e.g. just after an upgrade) falls back to the reading at collection.
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

from billing.models import UsageKind, UsageRecord, UsageSample, UsageSampleDay
from core import audit
from core.bulk import insert_rows

HOURS = Decimal("0.0001")
GB = Decimal(10**9)
# Billed as the average of the period's daily samples.
SAMPLED_KINDS = (UsageKind.DISK_GB, UsageKind.MAILBOXES, UsageKind.DATABASES, UsageKind.EXTRA_IPS)
# Thirteen months and a little: last year's same month can still be looked at.
KEEP_SAMPLES_DAYS = 400
# Where a subscription's tuple (``_subscriptions``) holds the plan's limit of a kind.
_LIMIT_AT = {UsageKind.DISK_GB: 2, UsageKind.MAILBOXES: 4, UsageKind.DATABASES: 5}


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
    its usage records; returns how many were written. Takes today's samples first if the
    daily schedule has not yet (a fresh install then has a reading)."""
    now = timezone.now()
    if not UsageSampleDay.objects.filter(day=timezone.localdate()).exists():
        sample_usage()
    users = get_user_model().objects.all() if accounts is None else accounts
    user_ids = users.values("pk")
    subs = _subscriptions(user_ids)
    rows: list[UsageRecord] = []
    rows += _website_plans(period, subs)
    rows += _held(period, user_ids, subs)
    rows += _bandwidth(period, user_ids, subs)
    rows += _vps_hours(period, user_ids, now)
    with transaction.atomic():
        current = UsageRecord.objects.filter(period_start=period.start, account__in=user_ids)
        billed = set(
            current.filter(line__isnull=False).values_list(
                "account_id", "kind", "source_type", "source_id", "plan_id"
            )
        )
        current.filter(line__isnull=True).delete()
        rows = [
            r
            for r in rows
            if (r.account_id, r.kind, r.source_type, r.source_id, r.plan_id) not in billed
        ]
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


# Daily samples ------------------------------------------------------------------------------


def sample_usage(day: date | None = None, *, actor=None) -> int:
    """Take ``day``'s (today's) readings of the kinds billed as a daily average, for every
    account, in one grouped query per kind; returns how many samples were written.

    Idempotent per day: a second run the same day replaces that day's samples (the later
    reading wins). Samples older than ``KEEP_SAMPLES_DAYS`` are pruned."""
    day = day or timezone.localdate()
    now = timezone.now()
    with transaction.atomic():
        marker, _ = UsageSampleDay.objects.get_or_create(day=day, defaults={"taken_at": now})
        # Two samplers of one day (the schedule, a collection) wait for each other here.
        UsageSampleDay.objects.select_for_update().filter(pk=marker.pk).exists()
        readings = _readings(None)
        rows = [
            [account_id, kind, day, value]
            for kind, values in readings.items()
            for account_id, value in values.items()
            if value > 0
        ]
        UsageSample.objects.filter(day=day).delete()
        insert_rows(UsageSample, ["account", "kind", "day", "value"], rows)
        UsageSampleDay.objects.filter(pk=marker.pk).update(taken_at=now, samples=len(rows))
        cutoff = timezone.localdate() - timedelta(days=KEEP_SAMPLES_DAYS)
        UsageSample.objects.filter(day__lt=cutoff).delete()
        UsageSampleDay.objects.filter(day__lt=cutoff).delete()
        audit.record(
            "billing.usage.sample",
            actor=actor,
            object_type="billing.usagesample",
            object_label=str(day),
            changes={"day": [None, str(day)], "samples": [None, len(rows)]},
        )
    return len(rows)


def _readings(user_ids) -> dict[str, dict[int, Decimal]]:
    """What every account (of ``user_ids``, a values("pk") queryset; None: all) holds now
    of each sampled kind: one grouped query per kind."""
    return {
        UsageKind.DISK_GB: _disk_now(user_ids),
        UsageKind.MAILBOXES: _mailboxes_now(user_ids),
        UsageKind.DATABASES: _databases_now(user_ids),
        UsageKind.EXTRA_IPS: _extra_ips_now(user_ids),
    }


def _averages(period: BillingPeriod, user_ids) -> tuple[int, dict[str, dict[int, Decimal]]]:
    """(the number of sampled days in ``period``, per kind and account the average over
    those days); (0, {}) when the period has no sampled day."""
    in_period = {"day__gte": period.start, "day__lt": period.end}
    days = UsageSampleDay.objects.filter(**in_period).count()
    if not days:
        return 0, {}
    averages: dict[str, dict[int, Decimal]] = {kind: {} for kind in SAMPLED_KINDS}
    totals = (
        UsageSample.objects.filter(account__in=user_ids, **in_period)
        .values("account_id", "kind")
        .annotate(total=Sum("value"))
        .values_list("account_id", "kind", "total")
    )
    for account_id, kind, total in totals:
        averages[kind][account_id] = Decimal(total) / days
    return days, averages


def _held(period: BillingPeriod, user_ids, subs: dict) -> list[UsageRecord]:
    """Disk, mailboxes, databases and extra addresses: the average of the period's daily
    samples (GB-months, mailbox-months ...: what was held for part of the period counts for
    that part), or without any sample in the period, what is held at collection."""
    days, held = _averages(period, user_ids)
    if days:
        suffix = f"average of {days} day{'s' if days != 1 else ''}"
        descriptions = {
            UsageKind.DISK_GB: f"Disk (GB, {suffix})",
            UsageKind.MAILBOXES: f"Mailboxes ({suffix})",
            UsageKind.DATABASES: f"Databases ({suffix})",
            UsageKind.EXTRA_IPS: f"Extra IP addresses ({suffix})",
        }
    else:
        held = _readings(user_ids)
        descriptions = {kind: UsageKind(kind).label for kind in SAMPLED_KINDS}
    out = []
    for kind in SAMPLED_KINDS:
        for user_id, quantity in held.get(kind, {}).items():
            if kind == UsageKind.EXTRA_IPS:
                out.append(_record(user_id, kind, quantity, description=descriptions[kind]))
                continue
            sub = subs.get(user_id)
            limit = sub[_LIMIT_AT[kind]] if sub else None
            if kind == UsageKind.DISK_GB:
                included = _q(Decimal(limit) / 1024) if limit is not None else Decimal(0)
            else:  # mailboxes, databases: included in the plan, or all of them without one
                included = Decimal(limit) if limit is not None else _q(quantity)
            out.append(
                _record(
                    user_id,
                    kind,
                    quantity,
                    included=included,
                    description=descriptions[kind],
                    plan_type="websites.plan" if sub else "",
                    plan_id=sub[0] if sub else None,
                )
            )
    return out


def _record(account_id, kind, quantity, **extra) -> UsageRecord:
    return UsageRecord(account_id=account_id, kind=kind, quantity=_q(quantity), **extra)


def _subscriptions(user_ids) -> dict[int, tuple]:
    from websites.models import Subscription

    rows = Subscription.objects.filter(user__in=user_ids).values_list(
        "user_id", "plan_id", "plan__name", "plan__disk_mb", "plan__bandwidth_gb",
        "plan__mailboxes", "plan__databases", "created_at",
    )  # fmt: skip
    return {row[0]: row[1:] for row in rows}


def _website_plans(period: BillingPeriod, subs: dict) -> list[UsageRecord]:
    start, end = period.bounds()
    out = []
    days = Decimal((period.end - period.start).days)
    for user_id, (plan_id, name, *_, created_at) in subs.items():
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


def _bandwidth(period: BillingPeriod, user_ids, subs: dict) -> list[UsageRecord]:
    from websites.models import SiteTraffic

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
    """Per VPS and plan, the hours it had that plan in the period: from its creation (or the
    period's start) to its deletion (the ``vps.delete`` audit entry), the period's end or
    now, cut at each plan change (``VpsPlanSpan``). Three queries however many VPSes."""
    from core.models import AuditEntry
    from vps.models import Vps, VpsPlanSpan

    start, end = period.bounds()
    in_period = Vps.objects.filter(owner__in=user_ids, created_at__lt=end).exclude(
        state=Vps.State.PENDING, created_at__lt=start
    )
    vpses = list(
        in_period.values_list(
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
    spans: dict[int, list[tuple[datetime, int, str]]] = {}
    if vpses:
        for vps_id, since, plan_id, plan_name in (
            VpsPlanSpan.objects.filter(vps__in=in_period.values("pk"), since__lt=end)
            .order_by("vps_id", "since", "id")
            .values_list("vps_id", "since", "plan_id", "plan__name")
        ):
            spans.setdefault(vps_id, []).append((since, plan_id, plan_name))
    out = []
    for pk, uid, owner_id, plan_id, plan_name, hostname, created_at, _state in vpses:
        stop = min(end, now, deleted_at.get(str(uid), end))
        begin = max(start, created_at)
        if stop <= begin:
            continue
        by_plan = _hours_by_plan(spans.get(pk) or [(created_at, plan_id, plan_name)], begin, stop)
        for (span_plan_id, span_plan_name), seconds in by_plan.items():
            out.append(
                _record(
                    owner_id,
                    UsageKind.VPS_HOURS,
                    Decimal(seconds) / 3600,
                    source_type="vps.vps",
                    source_id=str(uid),
                    description=f"VPS {hostname} (plan {span_plan_name})",
                    plan_type="vps.vpsplan",
                    plan_id=span_plan_id,
                )
            )
    return out


def _hours_by_plan(
    spans: list[tuple[datetime, int, str]], begin: datetime, stop: datetime
) -> dict[tuple[int, str], float]:
    """Seconds of ``begin``..``stop`` spent at each plan, from a VPS's spans (since, plan,
    name) in order: each lasts until the next; time before the first counts at the first's
    plan (a VPS whose history starts late). A plan had twice is summed; none under a
    second is kept."""
    seconds: dict[tuple[int, str], float] = {}
    for i, (since, plan_id, name) in enumerate(spans):
        lo = begin if i == 0 else max(begin, since)
        hi = min(stop, spans[i + 1][0]) if i + 1 < len(spans) else stop
        if hi > lo:
            key = (plan_id, name)
            seconds[key] = seconds.get(key, 0.0) + (hi - lo).total_seconds()
    return {key: value for key, value in seconds.items() if value >= 1}


def _of(queryset, user_ids, owner: str):
    return queryset if user_ids is None else queryset.filter(**{f"{owner}__in": user_ids})


def _disk_now(user_ids) -> dict[int, Decimal]:
    """GB measured now (``SystemAccount.disk_used_mb``, all servers)."""
    from websites.models import SystemAccount

    used = (
        _of(SystemAccount.objects.filter(disk_used_mb__isnull=False), user_ids, "user")
        .values("user_id")
        .annotate(mb=Sum("disk_used_mb"))
        .values_list("user_id", "mb")
    )
    return {user_id: Decimal(mb) / 1024 for user_id, mb in used}


def _mailboxes_now(user_ids) -> dict[int, Decimal]:
    from mail.models import Mailbox

    rows = (
        _of(Mailbox.objects.all(), user_ids, "domain__owner")
        .values("domain__owner_id")
        .annotate(n=Count("pk"))
        .values_list("domain__owner_id", "n")
    )
    return {user_id: Decimal(n) for user_id, n in rows}


def _databases_now(user_ids) -> dict[int, Decimal]:
    from websites.databases.models import CustomerDatabase

    rows = (
        _of(CustomerDatabase.objects.all(), user_ids, "owner")
        .values("owner_id")
        .annotate(n=Count("pk"))
        .values_list("owner_id", "n")
    )
    return {user_id: Decimal(n) for user_id, n in rows}


def _extra_ips_now(user_ids) -> dict[int, Decimal]:
    """IPv4 addresses beyond each VPS's plan (the plan's IPv6 address is not counted)."""
    from vps.models import IpAddress

    rows = (
        _of(IpAddress.objects.filter(vps__isnull=False), user_ids, "vps__owner")
        .exclude(vps__state="deleted")
        .values_list("vps_id", "vps__owner_id", "vps__plan__ip_count", "address")
    )
    held: dict[int, list] = {}
    for vps_id, owner_id, included, address in rows:
        if ":" not in address:
            entry = held.setdefault(vps_id, [owner_id, included, 0])
            entry[2] += 1
    extra: dict[int, Decimal] = {}
    for owner_id, included, n in held.values():
        if n > included:
            extra[owner_id] = extra.get(owner_id, Decimal(0)) + n - included
    return extra
