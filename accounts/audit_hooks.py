"""Audit entries for state changes made inside allauth and django.contrib.auth.

The panel's own changes are audited in its services. These libraries change passwords,
email addresses and sessions in their own views, and tell us only through their signals,
so this is the one place the panel listens to signals: to record, never to change anything.
"""

from __future__ import annotations

from allauth.account import signals as allauth
from django.contrib.auth import signals as auth

from core import audit


def _record(action: str, user, request, **changes) -> None:
    actor = getattr(request, "user", None) if request is not None else None
    if not getattr(actor, "is_authenticated", False):
        actor = user
    audit.record(action, user, actor=actor, changes={k: list(v) for k, v in changes.items()})


def password_changed(sender, request, user, **kwargs):
    _record("user.password_change", user, request)


def password_set(sender, request, user, **kwargs):
    _record("user.password_set", user, request, via=(None, "account"))


def password_reset(sender, request, user, **kwargs):
    _record("user.password_reset", user, request)


def email_added(sender, request, user, email_address, **kwargs):
    _record("user.email_add", user, request, email=(None, email_address.email))


def email_removed(sender, request, user, email_address, **kwargs):
    _record("user.email_remove", user, request, email=(email_address.email, None))


def email_confirmed(sender, request, email_address, **kwargs):
    _record("user.email_verify", email_address.user, request, email=(None, email_address.email))


def email_changed(sender, request, user, from_email_address, to_email_address, **kwargs):
    before = from_email_address.email if from_email_address else None
    _record("user.email_change", user, request, email=(before, to_email_address.email))


def logged_in(sender, request, user, **kwargs):
    _record("user.login", user, request)


def logged_out(sender, request, user, **kwargs):
    if user is not None:
        _record("user.logout", user, request)


def connect() -> None:
    for signal, handler in (
        (allauth.password_changed, password_changed),
        (allauth.password_set, password_set),
        (allauth.password_reset, password_reset),
        (allauth.email_added, email_added),
        (allauth.email_removed, email_removed),
        (allauth.email_confirmed, email_confirmed),
        (allauth.email_changed, email_changed),
        (auth.user_logged_in, logged_in),
        (auth.user_logged_out, logged_out),
    ):
        signal.connect(handler, dispatch_uid=f"accounts.audit.{handler.__name__}")
