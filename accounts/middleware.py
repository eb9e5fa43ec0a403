"""Per-request account security: IP allow-list, idle timeout, and the second factor.

A session whose user has a confirmed OTP device (or must have one, as staff) reaches nothing
but the verify/enrol pages, static files and logout until the second factor passes.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import reverse

from accounts.devices import has_confirmed_device
from accounts.throttle import client_ip
from accounts.validators import ip_allowed
from core.audit import current_ip

# Paths open to a logged-in user who has not passed the second factor yet.
# Changing the password, email or 2FA itself is NOT among them.
OPEN_PREFIXES = (
    "/accounts/login/",
    "/accounts/logout/",
    "/accounts/password/reset/",
    "/accounts/confirm-email/",
    "/2fa/verify/",
    "/2fa/setup/",
    "/static/",
    "/healthz",
)
# Seconds between two recordings of a session's last activity (see _idle_expired).
ACTIVITY_GRANULARITY = 60


def session_timeout(user) -> int:
    """Seconds of inactivity after which ``user``'s session ends."""
    return (user.session_timeout_minutes or 0) * 60 or settings.SESSION_COOKIE_AGE


class SecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        ip = client_ip(request)
        token = current_ip.set(ip)
        try:
            response = self._check(request, ip)
            return response or self.get_response(request)
        finally:
            current_ip.reset(token)

    def _check(self, request, ip: str):
        user = request.user
        if not user.is_authenticated:
            return None
        networks = user.allowed_networks()
        if networks and not ip_allowed(ip, networks):
            logout(request)
            body = render_to_string("accounts/ip_refused.html", {"ip": ip}, request=request)
            return HttpResponseForbidden(body)
        if self._idle_expired(request, user):
            logout(request)
            return redirect(f"{reverse('account_login')}?next={request.path}")
        return self._second_factor(request, user)

    def _idle_expired(self, request, user) -> bool:
        timeout = session_timeout(user)
        now = int(time.time())
        session = request.session
        last = session.get("last_seen", now)
        if now - last > timeout:
            return True
        # Activity is recorded at most once a minute: writing the session row on every
        # request costs a database write per API call. The idle clock then runs from up to
        # a minute before the last request, so a session ends early by that much, never late.
        if "last_seen" not in session or now - last >= ACTIVITY_GRANULARITY:
            session["last_seen"] = now
        if session.get("_session_expiry") != timeout:
            session.set_expiry(timeout)
        return False

    def _second_factor(self, request, user):
        if user.is_verified() or request.path.startswith(OPEN_PREFIXES):
            return None
        if has_confirmed_device(user):
            target, message = "two_factor_verify", "Second factor required."
        elif user.requires_second_factor:
            target, message = "two_factor_setup", "Two-factor enrolment required for staff."
        else:
            return None
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message}, status=403)
        return redirect(f"{reverse(target)}?next={request.get_full_path()}")


class PanelLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Every portal view needs a login; the API authenticates (tokens too) in DRF itself."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
