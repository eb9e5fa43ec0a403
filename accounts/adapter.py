"""allauth adapter: our login throttle and attempt log, closed sign-up unless enabled."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts import throttle


class PanelAccountAdapter(DefaultAccountAdapter):
    def add_message(self, request, level, message_template=None, *args, **kwargs):
        # "Signed in" would be false while a second factor is still due.
        if message_template == "account/messages/logged_in.txt":
            return
        super().add_message(request, level, message_template, *args, **kwargs)

    def is_open_for_signup(self, request) -> bool:
        return settings.PANEL_ALLOW_SIGNUP

    def authenticate(self, request, **credentials):
        email = (credentials.get("email") or credentials.get("username") or "").strip()
        until = throttle.locked_until(email, throttle.client_ip(request))
        if until is not None:
            throttle.record_attempt(request, email, success=False, reason="locked")
            minutes = max(1, round((until - timezone.now()).total_seconds() / 60))
            raise ValidationError(
                f"Too many failed sign-in attempts. Try again in about {minutes} minute"
                f"{'s' if minutes != 1 else ''}.",
                code="locked",
            )
        user = super().authenticate(request, **credentials)
        throttle.record_attempt(
            request, email, success=user is not None, reason="" if user else "bad credentials"
        )
        return user
