"""Human titles for operation kinds. Apps register theirs in ``AppConfig.ready()``:

    kinds.register("server.test_connection", "Test connection", "SSH login, a command, facts")

A kind nobody registered still reads well: ``dns.publish_zone`` shows as "Publish zone" and
``website.create`` as "Create website".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    title: str
    checks: str = ""  # for checks: what is checked, shown beside the title


_kinds: dict[str, Kind] = {}


def register(kind: str, title: str, checks: str = "") -> None:
    _kinds[kind] = Kind(title, checks)


def describe(kind: str) -> Kind:
    found = _kinds.get(kind)
    if found is not None:
        return found
    subject, _, action = kind.rpartition(".")
    words = action.replace("_", " ").split()
    if not words:
        return Kind(kind)
    if len(words) == 1 and subject:
        words.append(subject.rsplit(".", 1)[-1].replace("_", " "))
    text = " ".join(words)
    return Kind(text[:1].upper() + text[1:])


def matching(text: str) -> list[str]:
    """Registered kinds whose title or name contains ``text`` (searching "test connection"
    or "test_conn" finds server.test_connection)."""
    text = text.lower().strip()
    return [k for k, found in _kinds.items() if text in found.title.lower() or text in k]
