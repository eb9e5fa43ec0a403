"""Validators for free text that people type: names, labels, notes.

Control characters (NUL breaks PostgreSQL, newlines forge log lines) and Unicode format
characters (bidi overrides such as U+202E reverse the text around them, zero-width characters
make two names look alike) are refused. ``refuse_nul`` walks JSON values too.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

# Cc: control, Cf: format (bidi controls, zero-width), Cs: surrogates, Co: private use,
# Zl/Zp: line and paragraph separators.
_REFUSED = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}
_MULTILINE_OK = {"\n", "\r", "\t"}


def _bad_character(value: str, allowed: set[str]) -> str | None:
    for ch in value:
        if ch not in allowed and unicodedata.category(ch) in _REFUSED:
            return ch
    return None


def validate_plain_text(value: str) -> None:
    """One line of text for names and labels."""
    bad = _bad_character(value, set())
    if bad is not None:
        raise ValidationError(
            f"Remove the invisible or control character U+{ord(bad):04X}.", code="control"
        )


def validate_multiline_text(value: str) -> None:
    """Notes and other text that may span lines."""
    bad = _bad_character(value, _MULTILINE_OK)
    if bad is not None:
        raise ValidationError(
            f"Remove the invisible or control character U+{ord(bad):04X}.", code="control"
        )


def refuse_nul(value, where: str = "value") -> None:
    """NUL anywhere in a (JSON) value: the databases cannot store it in text."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"The {where} contains a NUL character.", code="null")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key, where)
            refuse_nul(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_nul(item, where)
