"""Mailbox passwords: only a salted SHA512-CRYPT hash is kept, in the form Dovecot's
passwd-file reads (``{SHA512-CRYPT}$6$...``); the clear password is never stored."""

from __future__ import annotations

import secrets
import warnings

from django.core.exceptions import ValidationError

with warnings.catch_warnings():  # deprecated in 3.11, but it is glibc's crypt(3) Dovecot uses
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

MIN_LENGTH = 10
MAX_LENGTH = 200


def check_password(password) -> str:
    if not isinstance(password, str) or not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ValidationError(f"Use {MIN_LENGTH} to {MAX_LENGTH} characters.")
    if any(c in password for c in "\x00\r\n"):
        raise ValidationError("The password cannot hold NUL or line breaks.")
    return password


def hash_password(password: str) -> str:
    check_password(password)
    return "{SHA512-CRYPT}" + crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def verify_password(password: str, hashed: str) -> bool:
    raw = hashed.removeprefix("{SHA512-CRYPT}")
    return secrets.compare_digest(crypt.crypt(password, raw), raw)


def generate_password() -> str:
    return secrets.token_urlsafe(18)
