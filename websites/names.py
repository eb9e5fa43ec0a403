"""A site's names: what people type (Unicode, any case, with or without the root dot) becomes
the ASCII form nginx, DNS and certificates use (IDNA 2008 with UTS #46 mapping: ``bücher.de``
is stored as ``xn--bcher-kva.de``), checked whole by ``validate_domain``; pages show it back
in Unicode. Two sites never claim one name: nginx would serve only one of them.
"""

from __future__ import annotations

import idna
from django.core.exceptions import ValidationError
from django.db.models import Q

from websites.validators import validate_domain


def to_ascii(name: str) -> str:
    """The stored form of one name; ValidationError says why it is not a domain name."""
    raw = (name or "").strip().rstrip(".")
    if not raw:
        raise ValidationError("Enter a domain name.")
    if raw.isascii():
        value = raw.lower()
    else:
        try:
            value = idna.encode(raw, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValidationError(f"{raw!r} is not a valid internationalised name: {exc}") from exc
    validate_domain(value)
    if value.startswith("xn--") or ".xn--" in value:  # an ASCII form must decode back
        to_unicode_strict(value)
    return value


def to_unicode_strict(name: str) -> str:
    try:
        return idna.decode(name)
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValidationError(f"{name!r} is not a valid punycode name: {exc}") from exc


def to_unicode(name: str) -> str:
    """For display: the Unicode form, or the name as stored when it does not decode."""
    if "xn--" not in name:
        return name
    try:
        return idna.decode(name)
    except (idna.IDNAError, UnicodeError):
        return name


def normalize_aliases(domain: str, aliases: str | list[str] | None) -> str:
    """Aliases as stored: ASCII forms, separated by one space, in the order given, without
    repeats or the domain itself. Errors name each bad alias."""
    items = aliases.split() if isinstance(aliases, str) else list(aliases or [])
    out: list[str] = []
    errors: list[str] = []
    for item in items:
        try:
            value = to_ascii(item)
        except ValidationError as exc:
            errors.extend(exc.messages)
            continue
        if value != domain and value not in out:
            out.append(value)
    if errors:
        raise ValidationError(errors)
    if len(out) > 100:
        raise ValidationError("A site has at most 100 aliases.")
    return " ".join(out)


def _alias_match(name: str) -> Q:
    # Stored aliases are single-space separated lowercase names of [a-z0-9.-].
    escaped = name.replace(".", r"\.")
    return Q(aliases__regex=rf"(^| ){escaped}( |$)")


def name_conflicts(names: list[str], exclude_pk: int | None = None) -> list[str]:
    """The names of ``names`` another site already answers to (as domain or alias). Names
    only, never whose: the other site may be another customer's."""
    from websites.models import Website

    if not names:
        return []
    query = Q(domain__in=names)
    for name in names:
        query |= _alias_match(name)
    others = Website.objects.filter(query)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    taken: set[str] = set()
    for domain, aliases in others.values_list("domain", "aliases")[:200]:
        taken.update({domain, *aliases.split()} & set(names))
    return [n for n in names if n in taken]
