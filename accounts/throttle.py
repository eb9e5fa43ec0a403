"""Login throttling: too many failures for one account or one IP refuse further attempts."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import LoginAttempt
from core.clientip import for_request


def client_ip(request) -> str:
    return for_request(request)


def locked_until(email: str, ip: str):
    """When the cool-down for this account or IP ends, or None if attempts are allowed."""
    now = timezone.now()
    window_start = now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW)
    cooldown = timedelta(seconds=settings.LOGIN_COOLDOWN)
    limit = settings.LOGIN_FAILURE_LIMIT
    for field, value in (("email", email.lower()), ("ip", ip)):
        recent = LoginAttempt.objects.filter(
            **{field: value},
            success=False,
            lifted_at__isnull=True,
            created_at__gte=window_start - cooldown,
        ).exclude(reason="locked")
        times = list(recent.order_by("-created_at").values_list("created_at", flat=True)[:200])
        # Find a run of `limit` failures inside one window whose cool-down has not ended.
        for i in range(len(times) - limit + 1):
            newest, oldest = times[i], times[i + limit - 1]
            if newest - oldest <= timedelta(seconds=settings.LOGIN_FAILURE_WINDOW):
                until = newest + cooldown
                if until > now:
                    return until
                break
    return None


def record_attempt(request, email: str, *, success: bool, reason: str = "") -> LoginAttempt:
    return LoginAttempt.objects.create(
        email=email.lower()[:254],
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        success=success,
        reason=reason,
    )
