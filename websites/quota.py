"""Over quota: an owner whose measured disk use (``du``, websites.tasks.measure_disk) or
this month's bandwidth (websites/bandwidth.py) is past their plan.

- The alert source ``disk_over_quota`` (registered in ``WebsitesConfig.ready``) finds every
  subscriber the rule's owner may see who is over, so it fires and resolves with the
  measurements.
- ``enforce_quotas`` runs after each hourly measurement: on plans with
  ``suspend_over_quota`` the owner's live sites are suspended through the normal suspend
  Operation (audited, reason "over disk quota"), marked ``suspended_for_quota``; once a
  measurement finds the owner under quota again, only those sites are unsuspended. A site
  staff suspended themselves stays suspended.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model

from core.policy import VIEW, restrict
from websites import plans
from websites.models import Subscription, Website

log = logging.getLogger(__name__)

# The plan limits that are measured (not counted at creation): what "over quota" means.
MEASURED = {"disk_mb": "disk", "bandwidth_gb": "bandwidth"}


@dataclass(frozen=True)
class Excess:
    resource: str  # "disk_mb" or "bandwidth_gb"
    used: int
    limit: int

    @property
    def reason(self) -> str:
        return f"over {MEASURED[self.resource]} quota"

    def describe(self) -> str:
        unit = plans.UNITS[self.resource]
        return f"uses {self.used} {unit}; the plan allows {self.limit}"


def excesses(user, plan) -> list[Excess]:
    """What ``user`` uses past ``plan`` among the measured limits (empty: within)."""
    owners = get_user_model().objects.filter(pk=user.pk)
    found = []
    for resource in MEASURED:
        limit = getattr(plan, resource)
        if limit is None:
            continue
        used = plans.usage(owners, resource)
        if used > limit:
            found.append(Excess(resource, used, limit))
    return found


def _subscriptions(qs) -> Iterable[Subscription]:
    return (
        qs.filter(plan__in=_plans_with_measured_limits())
        .select_related("user", "plan")
        .order_by("pk")
    )


def _plans_with_measured_limits():
    from django.db.models import Q

    from websites.models import Plan

    return Plan.objects.filter(Q(disk_mb__isnull=False) | Q(bandwidth_gb__isnull=False))


def over_quota_source(rule, now: datetime):
    """Alert source ``disk_over_quota``: subscribers the rule's owner may see (itself, a
    reseller's customers, everyone for staff) whose disk or month's bandwidth is over."""
    from monitoring.alerts import Finding

    for sub in _subscriptions(restrict(Subscription, rule.owner, VIEW)):
        found = excesses(sub.user, sub.plan)
        if not found:
            continue
        first = found[0]
        yield Finding(
            subject=f"quota:{sub.user.uuid.hex}",
            label=sub.user.email,
            message=f"{sub.user.email} "
            + "; ".join(e.describe() for e in found)
            + f" (plan {sub.plan.name}).",
            value=float(first.used),
        )


def enforce_quotas() -> dict[str, int]:
    """Suspend (plans that say so) or lift quota suspensions after a measurement. Returns
    how many sites were suspended and unsuspended."""
    from websites import services

    suspended = unsuspended = 0
    for sub in _subscriptions(Subscription.objects.all()):
        found = excesses(sub.user, sub.plan)
        sites = Website.objects.filter(owner=sub.user).exclude(status=Website.Status.DELETING)
        if found and sub.plan.suspend_over_quota:
            for site in sites.filter(suspended=False).select_related("server", "owner"):
                services.do_suspend_website(site, actor=None, reason=found[0].reason, quota=True)
                suspended += 1
        else:  # back under (or the plan no longer suspends)
            for site in sites.filter(suspended=True, suspended_for_quota=True).select_related(
                "server", "owner"
            ):
                services.do_unsuspend_website(site, actor=None, quota=True)
                unsuspended += 1
    # Sites a quota suspended whose owner no longer has a plan with measured limits.
    for site in (
        Website.objects.filter(suspended=True, suspended_for_quota=True)
        .exclude(owner__subscription__plan__in=_plans_with_measured_limits())
        .select_related("server", "owner")
    ):
        services.do_unsuspend_website(site, actor=None, quota=True)
        unsuspended += 1
    if suspended or unsuspended:
        log.info("quota: %d sites suspended, %d unsuspended", suspended, unsuspended)
    return {"suspended": suspended, "unsuspended": unsuspended}
