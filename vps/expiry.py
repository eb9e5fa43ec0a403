"""VPS expiry (docs/vps.md, "Expiry"): a VPS with ``expires_at`` is suspended when that
time comes (domain stopped, state ``suspended``, console refused) and deleted through the
normal delete Operation ``PANEL_VPS_EXPIRY_GRACE_DAYS`` days later. Owners hear of it
before through monitoring's channels: an alert rule of kind ``vps_expiring`` fires 7 days
and again 1 day before, and once more when the VPS is suspended.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import audit
from core.policy import restrict
from vps.models import Vps

# Days before expiry at which the owner's vps_expiring rules fire (each stage once).
NOTICE_DAYS = (7, 1)
# States an expiry acts on: pending ones are still being made, the others are on their way out.
_LIVE = (Vps.State.RUNNING, Vps.State.STOPPED, Vps.State.PAUSED, Vps.State.ERROR, Vps.State.MISSING)


def grace() -> timedelta:
    return timedelta(days=getattr(settings, "PANEL_VPS_EXPIRY_GRACE_DAYS", 7))


def expire_vpses(now: datetime | None = None) -> str:
    """Scheduled: suspend what has expired, delete what is past the grace period."""
    from vps.services import do_delete_vps, start_suspend_expired

    now = now or timezone.now()
    suspended = deleted = 0
    for vps in Vps.objects.filter(expires_at__lte=now, state__in=_LIVE).select_related("owner"):
        start_suspend_expired(vps)
        suspended += 1
    doomed = Vps.objects.filter(
        expires_at__lte=now - grace(), state__in=(*_LIVE, Vps.State.SUSPENDED)
    ).select_related("owner")
    for vps in doomed:
        with transaction.atomic():
            audit.record(
                "vps.expired_delete",
                vps,
                changes={"expires_at": [audit.jsonable(vps.expires_at), None]},
            )
            do_delete_vps(vps, actor=None)
        deleted += 1
    return f"{suspended} suspended, {deleted} deleted after the grace period"


def vps_expiring_source(rule, now: datetime) -> Iterable:
    """Findings of a ``vps_expiring`` rule: one subject per VPS and stage (7 days, 1 day,
    suspended), so each stage notifies once and the previous one resolves."""
    from monitoring.alerts import Finding

    first = max(NOTICE_DAYS)
    qs = restrict(Vps, rule.owner).filter(
        expires_at__isnull=False,
        expires_at__lte=now + timedelta(days=first),
        state__in=(*_LIVE, Vps.State.SUSPENDED),
    )
    for vps in qs.only("uuid", "hostname", "expires_at", "state"):
        left = (vps.expires_at - now).total_seconds() / 86400
        if left <= 0:
            stage = "expired"
            ends = vps.expires_at + grace()
            message = (
                f"{vps.hostname} has expired and is suspended; it is deleted on "
                f"{ends:%Y-%m-%d %H:%M} UTC unless renewed."
            )
        else:
            stage = f"{min(d for d in NOTICE_DAYS if left <= d)}d"
            message = (
                f"{vps.hostname} expires on {vps.expires_at:%Y-%m-%d %H:%M} UTC "
                f"(in {left:.1f} days); it is then suspended."
            )
        yield Finding(
            subject=f"vps:{vps.uuid.hex}:{stage}",
            label=vps.hostname,
            message=message,
            value=round(left, 1),
        )
