"""The home page: what needs attention across every app, and a new operator's first steps.

It lives in the project package because it reads from several apps (core must not).
"""

from __future__ import annotations

from django.db.models import Count
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from core import events, health, rollups
from core.charts import daily_bars
from core.models import Operation
from core.policy import restrict
from servers.models import Server
from websites.models import Website

SERVER_CARDS = 200


def dashboard(request):
    user = request.user
    live_since = events.current_seq()  # before the data: see core.live.LivePageMixin
    ops = restrict(Operation, user)
    recent = list(ops.select_related("owner")[:8])
    active = dict(
        ops.filter(state__in=[Operation.State.RUNNING, Operation.State.QUEUED])
        .values_list("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    # Every server the user may see, as a live card (monitoring/live.py keeps them current).
    server_cards = list(restrict(Server, user).select_related("monitor")[:SERVER_CARDS])
    per_day = rollups.daily(user)
    bars, peak = daily_bars(per_day, today=timezone.localdate())
    finished = {"succeeded": 0, "failed": 0}
    for _day, state, count in per_day:
        if state in finished:
            finished[state] += count
    return render(
        request,
        "pages/dashboard.html",
        {
            "active": active,
            "finished": finished,
            "recent": recent,
            "bars": bars,
            "peak": peak,
            "live_since": live_since,
            "server_cards": server_cards,
            "more_servers": len(server_cards) == SERVER_CARDS,
            "steps": first_steps(user),
            "health": health.checks() if user.is_staff else None,
        },
    )


def first_steps(user) -> list[dict] | None:
    """A new administrator's or reseller's way in: a server, then a website. None once done
    (and for customers, who cannot add either)."""
    if user.role not in ("admin", "reseller"):
        return None
    servers = restrict(Server, user)
    steps = [
        {
            "title": "Add your first server",
            "text": "Any Linux machine the panel can reach over SSH: its address and a user.",
            "done": servers.exists(),
            "url": reverse("server-add"),
            "action": "Add server",
        },
        {
            "title": "Test the connection",
            "text": "Put the panel's public key in the server's authorized_keys, then test.",
            "done": servers.exclude(last_seen_at=None).exists(),
            "url": reverse("servers"),
            "action": "Open servers",
        },
        {
            "title": "Add a website",
            "text": "A domain on one of your servers; the panel writes its nginx and PHP setup.",
            "done": restrict(Website, user).exists(),
            "url": reverse("admin:websites_website_add") if user.is_staff else "",
            "action": "Add website",
        },
    ]
    pending = [step for step in steps if not step["done"]]
    if not pending:
        return None
    pending[0]["next"] = True
    return steps
