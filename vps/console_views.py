"""The console pages of a VPS (serial in xterm.js, VNC in noVNC) and their tickets. The
pages only ask for a ticket; the websocket consumer (vps/consumers.py) does the rest."""

from __future__ import annotations

from csp.decorators import csp_update
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from core.generic import get_for_user
from core.policy import CHANGE
from vps import console
from vps.models import ConsoleTicket, Vps


def _page(request: HttpRequest, uuid, kind: str) -> HttpResponse:
    vps = get_for_user(Vps, request.user, CHANGE, uuid=uuid)
    return render(
        request,
        f"vps/console_{kind}.html",
        {"object": vps, "refusal": console.console_refusal(vps)},
    )


@csp_update(
    {"style-src": ["'unsafe-inline'"]}
)  # xterm.js and noVNC set styles; scripts stay strict
def serial_page(request: HttpRequest, uuid) -> HttpResponse:
    return _page(request, uuid, ConsoleTicket.Kind.SERIAL)


@csp_update({"style-src": ["'unsafe-inline'"]})
def vnc_page(request: HttpRequest, uuid) -> HttpResponse:
    return _page(request, uuid, ConsoleTicket.Kind.VNC)


def _ticket(request: HttpRequest, uuid, kind: str) -> JsonResponse:
    """A single-use ticket, valid 60 s and only for this browser session and this VPS."""
    vps = get_for_user(Vps, request.user, CHANGE, uuid=uuid)
    refusal = console.console_refusal(vps)
    if refusal:
        return JsonResponse({"error": refusal}, status=409)
    raw = console.issue_ticket(vps, request.user, request.session.session_key or "", kind)
    body = {"ticket": raw, "url": f"/ws/vps/{vps.uuid}/console/{kind}/"}
    if kind == ConsoleTicket.Kind.VNC:
        # noVNC answers the VNC server's challenge in the browser; only someone who may
        # change the VPS gets here, by a CSRF-checked POST, never in a page's HTML.
        body["password"] = vps.vnc_password
    return JsonResponse(body)


@require_POST
def serial_ticket(request: HttpRequest, uuid) -> JsonResponse:
    return _ticket(request, uuid, ConsoleTicket.Kind.SERIAL)


@require_POST
def vnc_ticket(request: HttpRequest, uuid) -> JsonResponse:
    return _ticket(request, uuid, ConsoleTicket.Kind.VNC)
