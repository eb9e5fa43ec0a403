"""Helpers every app's ``services.py`` uses.

A service function owns the list of fields a caller may write; ``accept_only`` refuses
anything else, so forms, serializers and the admin cannot widen it by accident.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import models

from core.validators import refuse_nul


def accept_only(data: dict, allowed: Iterable[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationError(f"These fields cannot be written here: {', '.join(unknown)}.")


def refuse_nul_in(obj: models.Model | dict, fields: Iterable[str]) -> None:
    """NUL in any text or JSON value is a field error (PostgreSQL cannot store it)."""
    errors = {}
    for name in fields:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        try:
            refuse_nul(value, "value")
        except ValidationError as exc:
            errors[name] = exc.messages
    if errors:
        raise ValidationError(errors)
