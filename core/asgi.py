"""Websocket plumbing shared by every consumer: the client's address, an exact Origin
check, and a quiet refusal of unknown paths."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from core.clientip import for_scope, parse_address, trusted_networks

log = logging.getLogger(__name__)


class ClientAddressMiddleware:
    """``scope["client"]`` becomes the real client behind trusted proxies, as for HTTP."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            port = (scope.get("client") or (None, 0))[1]
            scope = {**scope, "client": (for_scope(scope), port), "peer": scope.get("client")}
        return await self.app(scope, receive, send)


def _scheme(scope) -> str:
    secure = scope.get("scheme") in ("wss", "https")
    headers = dict(scope.get("headers") or [])
    peer = parse_address(((scope.get("peer") or scope.get("client") or (None,))[0]) or "")
    trusted = trusted_networks(tuple(settings.TRUSTED_PROXIES))
    if peer is not None and any(peer in net for net in trusted):
        secure = secure or headers.get(b"x-forwarded-proto", b"") == b"https"
    return "https" if secure else "http"


def origin_allowed(scope) -> bool:
    """The Origin must be exactly this site (scheme, host and port), as Django's CSRF check
    demands of form posts, or one of CSRF_TRUSTED_ORIGINS."""
    headers = dict(scope.get("headers") or [])
    origin = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    if not origin or not host:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    parts = urlsplit(origin)
    return origin == f"{_scheme(scope)}://{host}" and parts.path == ""


class OriginValidator:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            await receive()  # the connect message
            await send({"type": "websocket.close", "code": 4403})
            return None
        return await self.app(scope, receive, send)


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Any websocket path no route claims: refused with 4404 instead of an error."""

    async def connect(self):
        log.info("websocket to unknown path %s refused", self.scope.get("path"))
        await self.close(code=4404)
