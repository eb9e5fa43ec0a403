"""core.bulk writes what the ORM would write (SQLite and PostgreSQL): JSON, aware times,
foreign keys, and fields that prepare their own values (encrypted text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from core import bulk
from monitoring.models import Sample, ServerMonitor
from servers.models import Server

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def servers(admin_user):
    return [
        Server.objects.create(name=f"b{i}", address=f"10.8.0.{i}", owner=admin_user)
        for i in (1, 2, 3)
    ]


def _raw(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_inserted_rows_read_back_as_the_orm_would_store_them(servers):
    a, b, c = servers
    values = {"cpu": 12.5, "name": 'ä "quoted" \\ tab\t', "list": [1, None, 2.25], "ok": True}
    odd_keys = {1: "int key", "big": 2**70}  # orjson refuses both: json.dumps takes over
    bulk.insert_rows(
        Sample,
        ("server", "at", "values", "detail"),
        [(a.pk, T0, values, {}), (b.pk, T0 + timedelta(seconds=30), odd_keys, {"x": None})],
    )
    Sample.objects.create(server=c, at=T0, values=values)  # the ORM's way, to compare

    got = {s.server_id: s for s in Sample.objects.all()}
    assert got[a.pk].values == values and got[a.pk].at == T0
    assert got[b.pk].values == {"1": "int key", "big": 2**70}
    assert got[b.pk].detail == {"x": None}
    # The stored time is exactly what the ORM stores (SQLite compares it as text).
    stored = dict(_raw("SELECT server_id, at FROM monitoring_sample", []))
    assert stored[a.pk] == stored[c.pk]
    assert Sample.objects.filter(at=T0).count() == 2


def test_updated_rows_change_only_the_rows_named(servers):
    a, b, c = servers
    for s in servers:
        ServerMonitor.objects.create(server=s, old_counters={"old": 1}, failures=7)
    at = T0 + timedelta(hours=1)
    # A jsonb column (old_counters) and a json one (state, monitoring/fields.py).
    bulk.update_rows(
        ServerMonitor,
        "server",
        ("failures", "old_counters", "state", "last_sample_at", "last_error"),
        [
            [0, {"at": at.timestamp(), "cpu_total": 10**12}, {"cpu": 1.5}, at, "", a.pk],
            [3, {}, {"s": 'it\'s "x"'}, None, "timed out: 'x'", b.pk],
        ],
    )
    got = {m.server_id: m for m in ServerMonitor.objects.all()}
    assert (got[a.pk].failures, got[a.pk].state, got[a.pk].last_sample_at) == (0, {"cpu": 1.5}, at)
    assert got[a.pk].old_counters == {"at": at.timestamp(), "cpu_total": 10**12}
    assert (got[b.pk].failures, got[b.pk].old_counters, got[b.pk].last_sample_at) == (3, {}, None)
    assert got[b.pk].state == {"s": 'it\'s "x"'} and got[b.pk].last_error == "timed out: 'x'"
    assert (got[c.pk].failures, got[c.pk].old_counters, got[c.pk].state) == (7, {"old": 1}, None)

    # A column that is NULL in every row (a round where no server answered).
    bulk.update_rows(ServerMonitor, "server", ("last_sample_at", "failures"), [[None, 1, a.pk]])
    assert ServerMonitor.objects.filter(server=a, last_sample_at=None, failures=1).exists()


def test_a_field_that_prepares_its_values_still_does(servers):
    a, _b, _c = servers
    bulk.update_rows(Server, "id", ("private_key",), [["not stored in the clear", a.pk]])
    (stored,) = _raw("SELECT private_key FROM servers_server WHERE id = %s", [a.pk])[0]
    assert "not stored in the clear" not in stored
    assert Server.objects.get(pk=a.pk).private_key == "not stored in the clear"
