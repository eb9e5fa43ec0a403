"""Account names: the short, stable name a user's system resources are named after (Linux
users, database and database-user prefixes, pool and unit names).

Chosen once when the user is created (from the email's local part, made unique with a
number) and never changed, so renaming an email never renames anything on a server.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# Linux user names (useradd's default NAME_REGEX is stricter than POSIX), MariaDB user
# names (80 chars) and PostgreSQL roles all accept this; short enough to take a suffix
# ("_wp", "_db2") and stay under MySQL's 32-character user-name limit.
ACCOUNT_NAME = re.compile(r"^[a-z][a-z0-9]{2,11}$")
MAX_LEN = 12
STEM_LEN = 8


def validate_account_name(value: str) -> None:
    if not ACCOUNT_NAME.fullmatch(value or ""):
        raise ValidationError(
            f"{value!r} is not an account name: 3-12 lower-case letters and digits, "
            "starting with a letter."
        )


def stem_from_email(email: str) -> str:
    """The readable part of an account name: letters and digits of the email's local part."""
    local = email.split("@", 1)[0].lower()
    stem = re.sub(r"[^a-z0-9]", "", local)
    if not stem or not stem[0].isalpha():
        stem = "u" + stem
    return (stem + "usr")[: max(3, min(STEM_LEN, len(stem)))]


def choose_account_name(email: str, taken) -> str:
    """The first free name among stem, stem2, stem3 ... ``taken(name) -> bool`` asks the store."""
    stem = stem_from_email(email)
    if not taken(stem):
        return stem
    for n in range(2, 10**4):
        name = f"{stem}{n}"
        if not taken(name):
            return name
    raise ValidationError("No free account name for this email address.")
