"""Recurring tasks, declared by each app in code and kept in django-q2's Schedule table.

An app calls ``every(...)`` from its ``AppConfig.ready()``; after ``migrate`` the table is
brought in line (created, updated, and schedules no app declares any more removed), so a
new app adds a schedule without writing a data migration.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "panel:"  # schedules we own carry this name prefix; others are left alone


@dataclass(frozen=True)
class Recurring:
    name: str
    func: str
    minutes: int


_declared: dict[str, Recurring] = {}


def every(minutes: int, func: str, *, name: str = "") -> None:
    """Run the dotted ``func`` every ``minutes`` minutes on a worker."""
    item = Recurring(PREFIX + (name or func), func, minutes)
    _declared[item.name] = item


def declared() -> list[Recurring]:
    return sorted(_declared.values(), key=lambda r: r.name)


def sync(**_kwargs) -> None:
    """post_migrate: make the Schedule table match what the apps declare."""
    from django_q.models import Schedule

    wanted = {r.name: r for r in declared()}
    Schedule.objects.filter(name__startswith=PREFIX).exclude(name__in=wanted).delete()
    for item in wanted.values():
        Schedule.objects.update_or_create(
            name=item.name,
            defaults={
                "func": item.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": item.minutes,
                "repeats": -1,
            },
        )
