"""Sections one app adds to another app's page, so neither imports the other's templates.

The page owner calls ``sections_for("servers.server_detail", server, user)`` and renders
each with ``{% render_section section %}``; an app adds one from its ``AppConfig.ready()``:

    add_section("servers.server_detail", "websites/partials/server_websites.html",
                lambda server, user: {"websites": restrict(Website, user).filter(server=server)})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    template: str
    context: Callable[..., dict]
    order: int = 100


@dataclass(frozen=True)
class Rendered:
    template: str
    context: dict


_pages: dict[str, list[Section]] = {}


def add_section(page: str, template: str, context: Callable[..., dict], order: int = 100) -> None:
    sections = _pages.setdefault(page, [])
    if not any(s.template == template for s in sections):  # ready() may run twice in tests
        sections.append(Section(template, context, order))
        sections.sort(key=lambda s: s.order)


def sections_for(page: str, obj, user) -> list[Rendered]:
    return [Rendered(s.template, s.context(obj, user)) for s in _pages.get(page, [])]
