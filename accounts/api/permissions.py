from rest_framework import permissions

from accounts.models import ApiToken


class TokenScope(permissions.BasePermission):
    """Read-scoped tokens may only use safe methods."""

    message = "This token is read-only."

    def has_permission(self, request, view):
        token = request.auth
        if isinstance(token, ApiToken) and token.scope != ApiToken.Scope.WRITE:
            return request.method in permissions.SAFE_METHODS
        return True
