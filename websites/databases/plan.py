"""Customer databases count against the owner's hosting plan.

The plans module (``websites/plans.py``: ``enforce_limit`` and ``register_counter``) is
built beside this app; until it exists ``check_plan`` lets everything through. Both are
looked up at call time, so this file needs no change when plans land.
"""

from __future__ import annotations

from importlib import import_module


def _plans():
    try:
        return import_module("websites.plans")
    except ImportError:
        return None


def count_databases(owner) -> int:
    from websites.databases.models import CustomerDatabase

    return CustomerDatabase.objects.filter(owner=owner).count()


def register() -> None:
    plans = _plans()
    if plans is not None and hasattr(plans, "register_counter"):
        plans.register_counter("databases", count_databases)


def check_plan(owner, *, actor) -> None:
    """Raise ValidationError when ``owner``'s plan has no room for another database."""
    plans = _plans()
    if plans is not None and hasattr(plans, "enforce_limit"):
        plans.enforce_limit(owner, "databases", actor=actor)
