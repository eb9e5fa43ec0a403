"""The first administrator: created once with a one-time password, which can be reset."""

from __future__ import annotations

import secrets

from django.db import transaction

from accounts.models import Role, User
from core import audit


def first_admin() -> User | None:
    return User.objects.filter(role=Role.ADMIN).order_by("pk").first()


def ensure_first_admin(email: str) -> tuple[User, str | None]:
    """The first administrator, and its one-time password if it was created just now."""
    existing = first_admin()
    if existing is not None:
        return existing, None
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        user = User.objects.create_user(email, password, role=Role.ADMIN, name="Administrator")
        _mark_email_verified(user)
        audit.record("user.bootstrap_admin", user)
    return user, password


def reset_password(user: User) -> str:
    """A new one-time password for ``user`` (shown once, never stored in clear)."""
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        audit.record("user.bootstrap_reset_password", user)
    return password


def _mark_email_verified(user: User) -> None:
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
