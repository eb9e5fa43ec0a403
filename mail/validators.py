"""Strict checks for every value mail puts into a Postfix map or a Dovecot passwd-file.

Patterns are matched whole (``fullmatch``). Nothing accepted can hold whitespace, a quote, a
comma, a colon or a newline, so a value can never add a line, a key or a field to a map."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

from websites.names import to_ascii
from websites.validators import DOMAIN

# Lower-case letters, digits, dot, underscore, hyphen; no dot first, last or twice.
LOCAL_PART = re.compile(r"(?!.*\.\.)[a-z0-9_-](?:[a-z0-9._-]{0,62}[a-z0-9_-])?")
# A forwarder's foreign address may use + (sub-addressing) as well.
FOREIGN_LOCAL = re.compile(r"(?!.*\.\.)[A-Za-z0-9_+-](?:[A-Za-z0-9._+-]{0,62}[A-Za-z0-9_+-])?")
SHA512_CRYPT = re.compile(
    r"\{SHA512-CRYPT\}\$6\$(rounds=\d{4,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}"
)
MAX_DESTINATIONS = 50


def clean_local_part(value) -> str:
    """The local part as stored (lower case); ValidationError says why it is refused."""
    if not isinstance(value, str):
        raise ValidationError("Enter the part before the @.")
    text = value.strip().lower()
    if not LOCAL_PART.fullmatch(text):
        raise ValidationError(
            f"{value!r} is not a local part: use letters, digits and . _ - only "
            "(no spaces, quotes or other signs; at most 64)."
        )
    return text


def clean_mail_domain(value) -> str:
    """The domain's stored (ASCII, IDNA 2008) form, as websites store names."""
    if not isinstance(value, str):
        raise ValidationError("Enter a domain name.")
    return to_ascii(value)


def clean_address(value: str) -> str:
    """One destination of an alias or a forwarder: local@domain, domain stored in ASCII."""
    text = (value or "").strip()
    local, sep, domain = text.rpartition("@")
    if not sep or not FOREIGN_LOCAL.fullmatch(local):
        raise ValidationError(f"{value!r} is not an e-mail address.")
    try:
        return f"{local}@{to_ascii(domain)}"
    except ValidationError as exc:
        raise ValidationError(f"{value!r} is not an e-mail address: {exc.messages[0]}") from exc


def clean_destinations(value) -> str:
    """Destinations as stored: addresses one per line, in the order given, without repeats.
    Accepts a list or text separated by commas, spaces or newlines."""
    items = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", str(value or ""))
    out: list[str] = []
    errors: list[str] = []
    for item in items:
        if not isinstance(item, str):
            errors.append(f"{item!r} is not an e-mail address.")
            continue
        if not item.strip():
            continue
        try:
            address = clean_address(item)
        except ValidationError as exc:
            errors.extend(exc.messages)
            continue
        if address not in out:
            out.append(address)
    if errors:
        raise ValidationError(errors)
    if not out:
        raise ValidationError("Give at least one destination address.")
    if len(out) > MAX_DESTINATIONS:
        raise ValidationError(f"At most {MAX_DESTINATIONS} destinations.")
    return "\n".join(out)


def validate_password_hash(value: str) -> None:
    if not isinstance(value, str) or not SHA512_CRYPT.fullmatch(value):
        raise ValidationError("Not a {SHA512-CRYPT} hash.")


MAX_SPAM_ENTRIES = 500


def clean_spam_list(value) -> str:
    """A domain's sender allow or deny list as stored: addresses or domains, one per line,
    lower case, domains in ASCII, without repeats ("" for none)."""
    items = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", str(value or ""))
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(f"{item!r} is not an address or a domain.")
        text = item.strip().lower()
        if not text:
            continue
        try:
            entry = clean_address(text) if "@" in text else to_ascii(text)
        except ValidationError as exc:
            raise ValidationError(f"{text[:80]!r} is not an address or a domain.") from exc
        if entry not in out:
            out.append(entry)
    if len(out) > MAX_SPAM_ENTRIES:
        raise ValidationError(f"At most {MAX_SPAM_ENTRIES} entries.")
    return "\n".join(out)


def spam_list(stored: str) -> list[str]:
    """The stored list's entries that are still well formed (rendering checks again)."""
    out = []
    for line in (stored or "").splitlines():
        local, at, domain = line.rpartition("@")
        if DOMAIN.fullmatch(domain) and (not at or FOREIGN_LOCAL.fullmatch(local)):
            out.append(line)
    return out
