"""What customer databases add to other apps' pages (registered in DatabasesConfig.ready)."""

from __future__ import annotations

from core.policy import restrict


def server_database_servers(server, user) -> dict:
    from websites.databases.models import DatabaseServer

    return {"database_servers": restrict(DatabaseServer, user).filter(server=server)[:20]}


def website_databases(site, user) -> dict:
    """The site owner's databases on the site's server (what the site can use)."""
    from websites.databases.models import CustomerDatabase

    databases = (
        restrict(CustomerDatabase, user)
        .filter(owner_id=site.owner_id, db_server__server_id=site.server_id)
        .select_related("db_server")
        .order_by("name")[:20]
    )
    return {"databases": list(databases), "site": site}
