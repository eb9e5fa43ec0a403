"""Which units need applying: services mark them, an apply (or a publish) takes them.

Marks are kept per *scope*: a server (the file engine: its managed files) or a publisher's
target, named by a string ("publisher:key", see ``servers.engine.publisher.marks_of``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from servers.models import DirtyUnit, Server

Scope = Server | str


def _marks(scope: Scope) -> QuerySet[DirtyUnit]:
    if isinstance(scope, Server):
        return DirtyUnit.objects.filter(server=scope)
    return DirtyUnit.objects.filter(server=None, target=scope)


def mark_dirty(scope: Scope, units: Iterable[str] | None) -> None:
    """Record that ``units`` (every unit when None) may differ from what is live."""
    items = [""] if units is None else sorted(set(units))
    where = {"server": scope} if isinstance(scope, Server) else {"target": scope}
    DirtyUnit.objects.bulk_create([DirtyUnit(**where, unit=u) for u in items])


def dirty(scope: Scope) -> tuple[set[str] | None, int]:
    """(units to apply, None meaning all of them; the newest mark taken) for one run."""
    rows = list(_marks(scope).values_list("id", "unit"))
    if not rows:
        return set(), 0
    upto = max(i for i, _u in rows)
    units = {u for _i, u in rows}
    return (None if "" in units else units), upto


def clear_dirty(scope: Scope, upto: int) -> None:
    """Forget the marks a run has taken care of (later marks stay for the next one)."""
    _marks(scope).filter(id__lte=upto).delete()
