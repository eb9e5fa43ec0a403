"""Websockets that stream operation progress and log lines to the portal.

The portal's htmx ws extension swaps the HTML fragments we send into place by id; API
clients add ``?format=json`` and get the raw events.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from accounts.sessions import may_connect
from core import events
from core.models import Operation
from core.policy import restrict, stream_groups
from core.relay import relay


class _OperationStream(AsyncWebsocketConsumer):
    groups_joined: list[str]

    async def connect(self):
        self.groups_joined = []
        user = self.scope.get("user")
        client = self.scope.get("client") or (None, None)
        allowed = await database_sync_to_async(may_connect)(
            user, self.scope.get("session") or {}, client[0]
        )
        if not allowed:
            await self.close(code=4401)
            return
        query = parse_qs((self.scope.get("query_string") or b"").decode())
        self.as_json = query.get("format") == ["json"]
        # A page may ask for its own fragments (e.g. the server list refreshes server rows).
        view = (query.get("view") or [""])[0]
        if view in self.views:
            self.update_template = self.views[view]
        groups = await self.groups_for(user)
        if groups is None:
            await self.close(code=4404)
            return
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = groups
        await self.accept()
        if not events.layer_is_shared():
            relay.subscribe()

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "groups_joined", None) and not events.layer_is_shared():
            relay.unsubscribe()

    async def groups_for(self, user) -> list[str] | None:
        raise NotImplementedError

    update_template = "core/partials/operation_live.html"
    views: dict[str, str] = {}

    async def operation_update(self, event):
        if self.as_json:
            await self.send(json.dumps(event))
        else:
            await self.send(render_to_string(self.update_template, {"e": event}))

    async def operation_log(self, event):
        if self.as_json:
            await self.send(json.dumps(event))
        else:
            await self.send(render_to_string("core/partials/operation_log_line.html", {"e": event}))


class OperationListConsumer(_OperationStream):
    """Every operation the user may see: the groups come from the policy."""

    update_template = "core/partials/operation_list_live.html"
    views = {"servers": "servers/partials/server_live.html"}

    async def groups_for(self, user):
        return stream_groups(user, "ops")


class OperationDetailConsumer(_OperationStream):
    async def groups_for(self, user):
        uuid = self.scope["url_route"]["kwargs"]["uuid"]
        visible = await database_sync_to_async(_visible)(user, uuid)
        return [f"op.{uuid.hex}"] if visible else None


def _visible(user, uuid) -> bool:
    return restrict(Operation, user).filter(uuid=uuid).exists()
