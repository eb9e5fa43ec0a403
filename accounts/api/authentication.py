from __future__ import annotations

from rest_framework import authentication, exceptions

from accounts import tokens
from accounts.sessions import second_factor_passed
from accounts.throttle import client_ip
from accounts.validators import ip_allowed


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer uhp_...``: a hashed, scoped, expiring token."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        parts = header.split()
        if not parts or parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        token = tokens.lookup(parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        networks = token.user.allowed_networks()
        if networks and not ip_allowed(client_ip(request), networks):
            raise exceptions.AuthenticationFailed("This address is not allowed for the account.")
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


class VerifiedSessionAuthentication(authentication.SessionAuthentication):
    """Session auth (with CSRF) that also insists on a passed second factor."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        if not second_factor_passed(user, request._request.session):
            raise exceptions.PermissionDenied("Second factor required.")
        return result
