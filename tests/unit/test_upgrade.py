"""An upgrade from the previous release's schema, with data in it, through `manage.py upgrade`.

The previous release is commit ea994e7 (2026-11-24, before the console tickets, VPS expiry,
certificate re-uploads, the monitoring index change, backups, mail and hooks): its latest migration
of each app is below. The database is taken back to that state, filled through that state's
models, and upgraded; the rows must come through whole, encrypted fields still readable.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

PREVIOUS_RELEASE = "ea994e7a8f7d336e87c2981df4539eddc043c472"
# Each local app's latest migration at PREVIOUS_RELEASE (None: the app did not exist).
PREVIOUS_SCHEMA = {
    "accounts": "0003_account_name",
    "certificates": "0002_challenge_and_wildcard",
    "core": "0005_trigram_search",
    "databases": "0001_initial",
    "dns": "0007_nameserver_server",
    "monitoring": "0003_checks",
    "servers": "0005_bans",
    "vps": "0002_stats",
    "websites": "0008_apps",
    "backups": None,
    "mail": None,
    "hooks": None,
    "billing": None,
}


def previous_state_apps(executor: MigrationExecutor):
    """The models as the previous release had them."""
    graph = executor.loader.graph
    nodes = [(app, name) for app, name in PREVIOUS_SCHEMA.items() if name]
    nodes += [leaf for leaf in graph.leaf_nodes() if leaf[0] not in PREVIOUS_SCHEMA]
    return executor.loader.project_state(nodes).apps


def test_upgrade_from_the_previous_release_keeps_the_data():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(list(PREVIOUS_SCHEMA.items()))
        assert "mail_maildomain" not in connection.introspection.table_names()
        old = previous_state_apps(MigrationExecutor(connection))
        User = old.get_model("accounts", "User")
        Server = old.get_model("servers", "Server")
        Sample = old.get_model("monitoring", "Sample")
        Zone = old.get_model("dns", "Zone")
        Operation = old.get_model("core", "Operation")
        admin = User.objects.create(
            email="admin@example.com", role="admin", password="!", account_name="admin"
        )
        customer = User.objects.create(
            email="c@example.com", role="customer", password="!", account_name="cust"
        )
        server = Server.objects.create(
            name="web1",
            address="192.0.2.10",
            owner=admin,
            auth_method="password",
            password="s3cret-password",
        )
        Sample.objects.create(server=server, values={"load1": 0.5})
        Zone.objects.create(name="example.com", owner=customer)
        Operation.objects.create(kind="server.apply", task="servers.tasks.apply", owner=admin)

        out = io.StringIO()
        call_command("upgrade", "--no-restart", "--no-static", stdout=out)
        assert "Applying mail.0001_initial" in out.getvalue()
    finally:
        MigrationExecutor(connection).migrate(latest)  # whatever happened, leave it current

    from accounts.models import User as NewUser
    from core.models import Operation as NewOperation
    from dns.models import Zone as NewZone
    from mail.models import MailDomain
    from monitoring.models import Sample as NewSample
    from servers.models import Server as NewServer

    assert MigrationExecutor(connection).migration_plan(latest) == []
    new_server = NewServer.objects.get(name="web1")
    assert new_server.password == "s3cret-password"  # still decrypts with the same key
    assert new_server.owner.email == "admin@example.com"
    assert NewSample.objects.get(server=new_server).values == {"load1": 0.5}
    assert NewZone.objects.get(name="example.com").owner.email == "c@example.com"
    assert NewOperation.objects.get().state == "queued"
    assert set(NewUser.objects.values_list("email", flat=True)) == {
        "admin@example.com",
        "c@example.com",
    }
    assert MailDomain.objects.count() == 0  # the new app's tables exist and work
