"""Mail clients ask ``autoconfig.<domain>`` / ``autodiscover.<domain>`` (CNAMEs to
``PANEL_PUBLIC_HOST``, mail/dnsrecords.py), one Host name per customer domain, which no
static ALLOWED_HOSTS can list. A request with such a Host (strictly ``autoconfig.`` or
``autodiscover.`` and a valid domain, optional port) for exactly one of the autoconfig
paths is let through as if addressed to ``PANEL_PUBLIC_HOST`` (which must be in
ALLOWED_HOSTS); every other path with that Host still meets Django's host check (400)."""

from __future__ import annotations

import re

from django.conf import settings

from websites.validators import DOMAIN

PATHS = frozenset(
    {
        "/mail/config-v1.1.xml",
        "/.well-known/autoconfig/mail/config-v1.1.xml",
        "/autodiscover/autodiscover.xml",
        "/Autodiscover/Autodiscover.xml",
    }
)
HOST = re.compile(r"(?:autoconfig|autodiscover)\.([a-z0-9.-]{1,253})(?::[0-9]{1,5})?")


def is_autoconfig_host(host: str) -> bool:
    m = HOST.fullmatch(host.lower())
    return bool(m and DOMAIN.fullmatch(m.group(1)))


class AutoconfigHostMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        panel = settings.PANEL_PUBLIC_HOST
        if (
            panel
            and request.path_info in PATHS
            and is_autoconfig_host(request.META.get("HTTP_HOST", ""))
        ):
            request.META["HTTP_HOST"] = panel
        return self.get_response(request)
