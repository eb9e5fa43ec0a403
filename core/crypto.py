"""Encryption of secrets at rest with a rotatable key set (first key encrypts, all decrypt)."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """No configured key opens this value: a key was dropped before rotation finished."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def fernet() -> MultiFernet:
    if not settings.ENCRYPTION_KEYS:
        raise ImproperlyConfigured("PANEL_ENCRYPTION_KEYS must be set to store or read secrets.")
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "No configured PANEL_ENCRYPTION_KEYS key decrypts this value."
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt with the first (newest) key."""
    return fernet().rotate(token.encode()).decode()
