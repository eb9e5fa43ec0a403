"""Secrets the panel cannot run without, outside debug mode.

Reported by `manage.py check --deploy` and enforced by the web entry point (panel/asgi.py);
development tooling (makemigrations, shell) works without them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured


def missing_secrets() -> list[str]:
    return list(settings.PANEL_MISSING_SECRETS)


@register(Tags.security, deploy=True)
def secrets_configured(app_configs, **kwargs):
    return [
        Error(
            f"{name} is not set.",
            hint="See docs/configuration.md (or set PANEL_DEBUG=1 for "
            "a local trial, which generates them under var/).",
            id="panel.E001",
        )
        for name in missing_secrets()
    ]


def require_runtime_secrets() -> None:
    """Called where the panel starts serving: refuse to run without its secrets."""
    missing = missing_secrets()
    if missing:
        raise ImproperlyConfigured(
            f"{', '.join(missing)} must be set (see docs/configuration.md), or PANEL_DEBUG=1 "
            "for a local trial."
        )
