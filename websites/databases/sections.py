"""What customer databases add to other apps' pages (registered in DatabasesConfig.ready)."""

from __future__ import annotations

from core.policy import restrict


def server_database_servers(server, user) -> dict:
    from websites.databases.models import DatabaseServer

    return {"database_servers": restrict(DatabaseServer, user).filter(server=server)[:20]}
