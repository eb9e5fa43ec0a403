"""Migration 0005 keeps every server's round state: the two jsonb columns are copied into
``state``, and stay (the code before it may still be writing them during an upgrade)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("monitoring", "0004_sample_rollup_one_server_index")]
AFTER = [("monitoring", "0005_servermonitor_state")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_round_state_is_copied_and_the_old_columns_kept(admin_user):
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        old = _migrate(BEFORE)
        server = old.get_model("servers", "Server").objects.create(
            name="kept", address="10.9.0.1", owner_id=admin_user.pk
        )
        monitor = old.get_model("monitoring", "ServerMonitor").objects.create(
            server_id=server.pk,
            counters={"at": 1.5, "cpu_total": 100.0},
            latest={"cpu": 12.5, "mem_pct": 40.0},
        )
        new = _migrate(AFTER)
        row = new.get_model("monitoring", "ServerMonitor").objects.get(pk=monitor.pk)
        assert row.state == {
            "counters": {"at": 1.5, "cpu_total": 100.0},
            "latest": {"cpu": 12.5, "mem_pct": 40.0},
        }
        assert row.old_counters == {"at": 1.5, "cpu_total": 100.0}
        assert row.old_latest == {"cpu": 12.5, "mem_pct": 40.0}
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reloptions FROM pg_class WHERE relname = 'monitoring_servermonitor'"
                )
                assert cursor.fetchone()[0] == ["fillfactor=50"]
    finally:
        _migrate(leaves)


def test_the_model_reads_state_and_falls_back_to_the_old_columns(admin_user):
    from monitoring.models import ServerMonitor
    from servers.models import Server

    server = Server.objects.create(name="s", address="10.9.0.2", owner=admin_user)
    before = ServerMonitor.objects.create(
        server=server, old_counters={"cpu_total": 1.0}, old_latest={"cpu": 3.0}
    )
    before.refresh_from_db()
    assert before.state is None
    assert before.counters == {"cpu_total": 1.0} and before.latest == {"cpu": 3.0}
    before.counters = {}  # the service does this when the collection method changes
    before.save()
    before.refresh_from_db()
    assert before.state == {"counters": {}, "latest": {"cpu": 3.0}}
    assert before.latest == {"cpu": 3.0} and before.counters == {}
