"""Sharing one object with a colleague: a per-object grant (django-guardian) that the policy
already honours (``core.policy.scope`` adds granted rows to what a user may see or change).

An app opts a model in from its ``AppConfig.ready()``: ``sharing.register(Zone)``. Who may
share: the object's owner, the owner's reseller and administrators (never a grantee). With
whom: another active customer of the same provider (the owner's reseller, or the panel's
own customers when the owner has none), named by email; staff see everything already.
Levels: ``view`` (see it) and ``change`` (see and change it, not delete or share it).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models, transaction
from guardian.shortcuts import assign_perm, get_users_with_perms, remove_perm

from core import audit
from core.policy import ADMIN, CHANGE, CUSTOMER, VIEW, role_of

LEVELS = {"view": (VIEW,), "change": (VIEW, CHANGE)}
_shareable: dict[str, type[models.Model]] = {}


def register(model: type[models.Model]) -> None:
    _shareable[model._meta.label_lower] = model


def model_for(label: str) -> type[models.Model] | None:
    return _shareable.get(label)


def label_of(obj: models.Model) -> str:
    return obj._meta.label_lower


def may_share(user, obj: models.Model) -> bool:
    owner = getattr(obj, "owner", None)
    if label_of(obj) not in _shareable or owner is None or not user.is_authenticated:
        return False
    return owner.pk == user.pk or role_of(user) == ADMIN or owner.reseller_id == user.pk


def _perm(obj: models.Model, action: str) -> str:
    return f"{obj._meta.app_label}.{action}_{obj._meta.model_name}"


def shares_of(obj: models.Model) -> list[tuple[object, str]]:
    """(user, level) for everyone the object is shared with, by email."""
    found = get_users_with_perms(obj, attach_perms=True, with_group_users=False)
    change = f"change_{obj._meta.model_name}"
    out = [(user, "change" if change in perms else "view") for user, perms in found.items()]
    return sorted(out, key=lambda pair: pair[0].email)


def _colleague(obj: models.Model, email: str):
    owner = obj.owner
    users = (
        get_user_model()
        .objects.filter(
            email__iexact=email.strip(),
            is_active=True,
            role=CUSTOMER,
            reseller_id=owner.reseller_id,
        )
        .exclude(pk=owner.pk)
    )
    return users.first()


def do_share(obj: models.Model, *, actor, data: dict):
    """Give the colleague with ``data["email"]`` the ``data["level"]`` (view or change)."""
    if set(data) - {"email", "level"}:
        raise ValidationError("Only email and level.")
    if not may_share(actor, obj):
        raise ValidationError("You may not share this.")
    level = data.get("level") or "view"
    if level not in LEVELS:
        raise ValidationError({"level": "Choose view or change."})
    email = str(data.get("email") or "")
    if "\x00" in email or len(email) > 254:
        raise ValidationError({"email": "Not an email address."})
    user = _colleague(obj, email)
    if user is None:
        raise ValidationError(
            {"email": "No customer with this email among your provider's customers."}
        )
    with transaction.atomic():
        for action in (VIEW, CHANGE):
            if action in LEVELS[level]:
                assign_perm(_perm(obj, action), user, obj)
            else:
                remove_perm(_perm(obj, action), user, obj)
        audit.record(
            "sharing.grant",
            obj,
            actor=actor,
            owner_id=obj.owner_id,
            changes={"shared_with": [None, f"{user.email} ({level})"]},
        )
    return user


def do_unshare(obj: models.Model, *, actor, data: dict) -> None:
    """Take back everything ``data["user"]`` was given on ``obj``."""
    if set(data) - {"user"}:
        raise ValidationError("Only user.")
    if not may_share(actor, obj):
        raise ValidationError("You may not share this.")
    user = data["user"]
    with transaction.atomic():
        for action in (VIEW, CHANGE):
            remove_perm(_perm(obj, action), user, obj)
        audit.record(
            "sharing.revoke",
            obj,
            actor=actor,
            owner_id=obj.owner_id,
            changes={"shared_with": [user.email, None]},
        )


def section(obj: models.Model, user) -> dict | None:
    """The context of ``core/partials/sharing.html`` for a page about ``obj`` (None: the
    user may not share it, so the page shows nothing)."""
    if not may_share(user, obj):
        return None
    return {"obj": obj, "label": label_of(obj), "shares": shares_of(obj)}
