"""The one place that decides which objects a user may see or change.

Portal views, admin and API viewsets all call ``for_user``. Objects out of reach are simply
not in the queryset, so a lookup answers 404 rather than revealing that they exist.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

VIEW = "view"
CHANGE = "change"


def _role(user) -> str | None:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    return user.role


def owner_scope(user, owner_field: str = "owner") -> Q | None:
    """Q for rows a non-staff user owns through ``owner_field``; None means every row."""
    role = _role(user)
    if role in ("admin", "support"):
        return None
    q = Q(**{owner_field: user})
    if role == "reseller":
        q |= Q(**{f"{owner_field}__reseller": user})
    return q


def support_may_change(model) -> bool:
    return getattr(model, "SUPPORT_MAY_CHANGE", False)


class OwnedQuerySet(models.QuerySet):
    """QuerySet for models with an ``owner`` foreign key to the user."""

    owner_field = "owner"

    def for_user(self, user, action: str = VIEW):
        role = _role(user)
        if role is None:
            return self.none()
        if role == "admin":
            return self
        if role == "support":
            if action == VIEW or support_may_change(self.model):
                return self
            return self.none()
        q = owner_scope(user, self.owner_field)
        granted = _granted_pks(user, self.model, action)
        if granted is not None:
            q |= Q(pk__in=granted)
        return self.filter(q)


def _granted_pks(user, model, action: str):
    """Primary keys granted to ``user`` object by object through django-guardian."""
    from guardian.shortcuts import get_objects_for_user

    perm = f"{model._meta.app_label}.{action}_{model._meta.model_name}"
    granted = get_objects_for_user(
        user, perm, klass=model, accept_global_perms=False, with_superuser=False
    )
    return granted.values("pk")
