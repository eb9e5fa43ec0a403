"""Template helpers for the portal's shared components."""

from __future__ import annotations

import re
from functools import lru_cache

from django import template
from django.conf import settings
from django.template.defaultfilters import time as time_filter
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()
_NAME = re.compile(r"^[a-z0-9-]+$")

STATE_TONES = {
    "queued": "neutral",
    "running": "info",
    "succeeded": "ok",
    "failed": "bad",
    "cancelled": "warn",
    "active": "ok",
    "expired": "warn",
    "revoked": "bad",
    # servers (status from monitoring rounds)
    "online": "ok",
    "offline": "bad",
    "maintenance": "warn",
    # monitoring: alerts, uptime checks, deliveries
    "firing": "bad",
    "resolved": "ok",
    "up": "ok",
    "down": "bad",
    "sent": "ok",
    "pending": "neutral",
    # DNS: zone publishing, NS verification, the DNSSEC chain
    "published": "ok",
    "error": "bad",
    "ok": "ok",
    "mismatch": "bad",
    "waiting": "warn",
    "unchecked": "neutral",
    # app sites' processes
    "crashed": "bad",
    "stopped": "warn",
    "starting": "neutral",
}


@lru_cache(maxsize=128)
def _svg(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"bad icon name {name!r}")
    text = (settings.BASE_DIR / "static" / "icons" / f"{name}.svg").read_text()
    return text[text.index("<svg") :]


@register.simple_tag
def icon(name: str, css: str = "size-4") -> str:
    """A Lucide icon inlined, so it takes the text colour and needs no request."""
    svg = _svg(name).replace(
        f'class="lucide lucide-{name}"',
        f'class="lucide {escape(css)} shrink-0" aria-hidden="true" focusable="false"',
        1,
    )
    return mark_safe(svg)  # noqa: S308 - our own vendored files, class escaped


@register.inclusion_tag("components/badge.html")
def state_badge(state: str, label: str | None = None):
    return {
        "tone": STATE_TONES.get(state, "neutral"),
        "label": label or state.title(),
        "state": state,
    }


@register.simple_tag(takes_context=True)
def query_with(context, **kwargs) -> str:
    query = context["request"].GET.copy()
    for key, value in kwargs.items():
        query[key] = value
    return query.urlencode()


@register.simple_tag(takes_context=True)
def render_section(context, section) -> str:
    """A section another app adds to this page (core/sections.py)."""
    from django.template.loader import render_to_string

    return render_to_string(section.template, section.context, request=context.get("request"))


@register.simple_tag(takes_context=True)
def may(context, action: str, target) -> bool:
    """``{% may "apply" server as can_apply %}``: the policy's answer for the current user.

    ``target`` is an object (its precomputed ``may`` is used when present) or a model label
    such as ``"servers.server"`` for model-level actions like ``add``.
    """
    from django.apps import apps

    from core import policy

    if isinstance(target, str):
        target = apps.get_model(target)
    return policy.may(context["request"].user, action, target)


@register.simple_tag
def log_line(line) -> str:
    """One operation log line. A tag, not an include: a log has thousands of lines."""
    return format_html(
        '<div class="log-{}" data-line="{}"><span class="log-time">{}</span> {}</div>',
        line.level,
        line.pk,
        time_filter(timezone.localtime(line.created_at), "H:i:s"),
        line.message,
    )
