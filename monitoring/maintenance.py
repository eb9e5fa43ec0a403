"""Maintenance windows: when they are open, and the servers' status while they are.

A window is open from ``starts_at`` to ``ends_at``; a weekly one again every 7 days at the
same wall-clock time in its ``time_zone`` (so 02:00 Europe/Berlin stays 02:00 across the
change to and from summer time, and the UTC instant moves by an hour).

``apply_windows()`` runs at the start of every collection round, every minute
(``monitoring.tasks.apply_maintenance``) and after each change of a window: servers in an
open window get the status "maintenance" (their monitor's ``in_window`` records that a
window set it); when no window holds them any more the status goes back to "unknown" and
the next round sets online or offline from what it reads. A status of "maintenance" set
by a person is never touched. Both changes are audited and announced.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import audit, events
from core.policy import CHANGE, restrict
from monitoring.models import MaintenanceWindow, ServerMonitor
from servers.models import Server

WEEK = timedelta(weeks=1)


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock time of ``moment`` in ``tz``."""
    return moment.astimezone(tz).replace(tzinfo=None)


def occurrence(window: MaintenanceWindow, now: datetime) -> tuple[datetime, datetime] | None:
    """The (start, end) of the window's occurrence that holds ``now``, or None."""
    if now < window.starts_at:
        return None
    if window.repeat != MaintenanceWindow.Repeat.WEEKLY:
        return (window.starts_at, window.ends_at) if now < window.ends_at else None
    tz = ZoneInfo(window.time_zone)
    start = _wall(window.starts_at, tz)
    length = _wall(window.ends_at, tz) - start  # in wall-clock time, kept every week
    # The occurrence that began last: an earlier one ended before it (a week is longer).
    k = (_wall(now, tz) - start) // WEEK
    begin, end = _instant(start + k * WEEK, tz), _instant(start + k * WEEK + length, tz)
    return (begin, end) if begin <= now < end else None


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time: one in the hour skipped by summer time is
    taken with the offset before it (02:30 on that day is 03:30, when the clock has
    jumped); a repeated one is its first pass (fold 0)."""
    return wall.replace(tzinfo=tz).astimezone(UTC)


def next_start(window: MaintenanceWindow, now: datetime) -> datetime | None:
    """When the window next opens after ``now`` (None: a one-off window that has begun)."""
    if now < window.starts_at:
        return window.starts_at
    if window.repeat != MaintenanceWindow.Repeat.WEEKLY:
        return None
    tz = ZoneInfo(window.time_zone)
    start = _wall(window.starts_at, tz)
    weeks = (_wall(now, tz) - start) // WEEK
    for k in (weeks, weeks + 1, weeks + 2):
        begin = _instant(start + k * WEEK, tz)
        if begin > now:
            return begin
    return None  # not reached: a later week always starts after now


def state(window: MaintenanceWindow, now: datetime) -> str:
    """ "open", "scheduled" or "ended", for lists."""
    if occurrence(window, now):
        return "open"
    return "scheduled" if next_start(window, now) else "ended"


def servers_of(window: MaintenanceWindow):
    """The servers a window holds: those its owner may change, narrowed by its scope."""
    qs = restrict(Server, window.owner, CHANGE)
    if window.scope == MaintenanceWindow.Scope.SERVER:
        return qs.filter(pk=window.server_id)
    if window.scope == MaintenanceWindow.Scope.LOCATION:
        return qs.filter(location=window.location)
    return qs


def held_servers(now: datetime) -> set[int]:
    """Primary keys of the servers some open window holds now."""
    candidates = MaintenanceWindow.objects.filter(
        Q(repeat=MaintenanceWindow.Repeat.WEEKLY) | Q(ends_at__gt=now), starts_at__lte=now
    ).select_related("owner")
    held: set[int] = set()
    for window in candidates:
        if occurrence(window, now):
            held.update(servers_of(window).values_list("pk", flat=True))
    return held


@transaction.atomic
def apply_windows(now: datetime | None = None) -> dict[int, str]:
    """Put the servers of open windows into maintenance and hand back those whose window
    ended; returns {server pk: new status} of what changed."""
    now = now or timezone.now()
    held = held_servers(now)
    changed: dict[int, str] = {}
    entering = list(
        Server.objects.select_for_update()
        .filter(pk__in=held)
        .exclude(status=Server.Status.MAINTENANCE)
        .select_related("owner")
    )
    released = list(
        Server.objects.select_for_update()
        .filter(monitor__in_window=True)
        .exclude(pk__in=held)
        .select_related("owner")
    )
    # Only a status the window set is handed back (a person may have changed it since).
    leaving = [s for s in released if s.status == Server.Status.MAINTENANCE]
    for server, status in [(s, Server.Status.MAINTENANCE) for s in entering] + [
        (s, Server.Status.UNKNOWN) for s in leaving
    ]:
        if server.status == status:
            continue
        before, server.status = server.status, status
        changed[server.pk] = status
        audit.record(
            "monitoring.maintenance." + ("start" if status == Server.Status.MAINTENANCE else "end"),
            server,
            changes={"status": [before, status]},
        )
    if entering:
        pks = [s.pk for s in entering]
        Server.objects.filter(pk__in=pks).update(status=Server.Status.MAINTENANCE)
        ServerMonitor.objects.filter(server__in=pks).update(in_window=True)
        missing = set(pks) - set(
            ServerMonitor.objects.filter(server__in=pks).values_list("server_id", flat=True)
        )
        ServerMonitor.objects.bulk_create(
            [ServerMonitor(server_id=pk, in_window=True) for pk in missing], ignore_conflicts=True
        )
    if leaving:
        Server.objects.filter(pk__in=[s.pk for s in leaving]).update(status=Server.Status.UNKNOWN)
    if released:
        ServerMonitor.objects.filter(server__in=[s.pk for s in released]).update(in_window=False)
    announced = [s for s in entering + leaving if s.pk in changed]
    if announced:
        events.changed_many(
            events.topic_of(Server), [(events.key_of(s), s.owner, {}) for s in announced]
        )
    return changed
