"""Daily counts of finished operations, so the dashboard never groups the operations table.

``count_finished`` runs once when an operation ends (every path that ends one calls it);
``rebuild`` recomputes everything from the operations (``manage.py rebuild_rollups``).
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.models import Operation, OperationDay
from core.policy import restrict


def count_finished(op: Operation) -> None:
    key = {
        "day": timezone.localdate(op.finished_at or timezone.now()),
        "owner_id": op.owner_id,
        "state": op.state,
    }
    rows = OperationDay.objects.filter(**key)
    if rows.update(count=F("count") + 1):
        return
    try:
        with transaction.atomic():
            OperationDay.objects.create(**key, count=1)
    except IntegrityError:  # another worker created the day's row in between
        rows.update(count=F("count") + 1)


def rebuild() -> int:
    """Recount every day from the operations table; returns the number of rows."""
    per_day = (
        Operation.objects.filter(finished_at__isnull=False)
        .annotate(day=TruncDate("finished_at"))
        .values_list("day", "owner_id", "state")
        .annotate(n=Count("id"))
        .order_by()
    )
    rows = [OperationDay(day=d, owner_id=o, state=s, count=n) for d, o, s, n in per_day]
    with transaction.atomic():
        OperationDay.objects.all().delete()
        OperationDay.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def daily(user, days: int = 14, today: date | None = None) -> list[tuple[date, str, int]]:
    """(day, state, count) for the last ``days`` days of what ``user`` may see."""
    today = today or timezone.localdate()
    return list(
        restrict(OperationDay, user)
        .filter(day__gt=today - timedelta(days=days))
        .values_list("day", "state")
        .annotate(n=Sum("count"))
        .order_by()
    )
