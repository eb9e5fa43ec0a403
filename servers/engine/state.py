"""Which units of a server need applying: services mark them, an apply takes them."""

from __future__ import annotations

from collections.abc import Iterable

from servers.models import DirtyUnit, Server


def mark_dirty(server: Server, units: Iterable[str] | None) -> None:
    """Record that ``units`` (every unit when None) may differ from what is applied."""
    items = [""] if units is None else sorted(set(units))
    DirtyUnit.objects.bulk_create([DirtyUnit(server=server, unit=u) for u in items])


def dirty(server: Server) -> tuple[set[str] | None, int]:
    """(units to apply, None meaning all of them; the newest mark taken) for one apply."""
    rows = list(DirtyUnit.objects.filter(server=server).values_list("id", "unit"))
    if not rows:
        return set(), 0
    upto = max(i for i, _u in rows)
    units = {u for _i, u in rows}
    return (None if "" in units else units), upto


def clear_dirty(server: Server, upto: int) -> None:
    """Forget the marks an apply has taken care of (later marks stay for the next one)."""
    DirtyUnit.objects.filter(server=server, id__lte=upto).delete()
