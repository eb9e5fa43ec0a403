"""Names of customer databases and database users: ``<account name>_<suffix>``.

The owner's account name (accounts/naming.py) is the prefix, so two customers can never
pick the same name and a name says whose it is. Whole names match a strict pattern (lower
case letters, digits and underscores, no quotes, no wildcards ``%``), and each engine's
length limit, before they reach an adapter, which quotes them again anyway.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

SUFFIX = re.compile(r"[a-z0-9][a-z0-9_]{0,30}")
FULL_NAME = re.compile(r"[a-z][a-z0-9]{2,11}_[a-z0-9][a-z0-9_]{0,50}")

MARIADB, POSTGRESQL = "mariadb", "postgresql"
# MariaDB: database names 64 characters, user names 80 (MySQL 5.7+: 32, so 32 for both
# flavours). PostgreSQL: identifiers 63 bytes (names are ASCII here).
DATABASE_MAX = {MARIADB: 64, POSTGRESQL: 63}
USER_MAX = {MARIADB: 32, POSTGRESQL: 63}


def validate_suffix(value: str) -> None:
    if not SUFFIX.fullmatch(value or ""):
        raise ValidationError(
            "Use 1-31 lower-case letters, digits and underscores, starting with a letter or digit."
        )


def validate_full_name(value: str) -> None:
    if not FULL_NAME.fullmatch(value or ""):
        raise ValidationError(
            f"{value!r} is not a valid name: the account name, an underscore, then lower-case "
            "letters, digits and underscores."
        )


def full_name(account_name: str, suffix: str, *, engine: str, kind: str) -> str:
    """The name on the server, checked against the pattern and ``engine``'s limit."""
    validate_suffix(suffix)
    name = f"{account_name}_{suffix}"
    validate_full_name(name)
    limit = (DATABASE_MAX if kind == "database" else USER_MAX)[engine]
    if len(name) > limit:
        raise ValidationError(
            f"{name!r} is {len(name)} characters long; this server allows {limit} for a {kind} "
            f"name (your prefix {account_name}_ counts)."
        )
    return name


def suffix_of(name: str) -> str:
    return name.split("_", 1)[1] if "_" in name else name
