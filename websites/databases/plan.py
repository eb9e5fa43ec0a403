"""Customer databases count against the owner's hosting plan (websites/plans.py)."""

from __future__ import annotations

from websites import plans


def count_databases(owners) -> int:
    from websites.databases.models import CustomerDatabase

    return CustomerDatabase.objects.filter(owner__in=owners).count()


def register() -> None:
    plans.register_counter("databases", count_databases)


def check_plan(owner, *, actor) -> None:
    """Raise ValidationError when ``owner``'s plan has no room for another database."""
    plans.enforce_limit(owner, "databases", actor=actor)
    plans.enforce_limit(owner, "disk_mb", actor=actor, adding=0)  # measured: not over
