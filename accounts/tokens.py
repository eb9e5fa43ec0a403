"""API tokens: shown once, stored as a SHA-256 digest, looked up by a public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.utils import timezone

from accounts.models import ApiToken

TOKEN_TAG = "uhp_"
PREFIX_LEN = 10


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_parts() -> tuple[str, str]:
    """A fresh (prefix, full token)."""
    alphabet = "abcdefghijkmnopqrstuvwxyz23456789"
    prefix = "".join(secrets.choice(alphabet) for _ in range(PREFIX_LEN))
    return prefix, f"{TOKEN_TAG}{prefix}_{secrets.token_urlsafe(32)}"


def lookup(raw: str) -> ApiToken | None:
    """The usable token matching ``raw``, or None. Records when it was last used."""
    if not raw.startswith(TOKEN_TAG):
        return None
    prefix = raw[len(TOKEN_TAG) : len(TOKEN_TAG) + PREFIX_LEN]
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.digest, digest(raw)):
        return None
    if not token.is_usable or not token.user.is_active:
        return None
    now = timezone.now()
    # Write at most once a minute per token: busy integrations must not turn reads into writes.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
