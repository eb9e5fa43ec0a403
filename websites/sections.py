"""What websites add to other apps' pages (registered in WebsitesConfig.ready)."""

from __future__ import annotations

from core.policy import restrict


def server_websites(server, user) -> dict:
    from websites.models import Website

    return {"websites": restrict(Website, user).filter(server=server)[:50]}
