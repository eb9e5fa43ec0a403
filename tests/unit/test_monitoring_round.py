"""How a collection round is stored: this machine's real /proc read for every server (local
transport), the same statements for 2 servers as for 12 (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import LiveEvent
from monitoring.collector import SAMPLE_TOPIC, collect_round
from monitoring.models import Sample, ServerMonitor
from servers.models import Server

pytestmark = pytest.mark.django_db

SERVER_TOPIC = "servers.server"


def _fleet(owner, count: int, start: int = 0) -> list[Server]:
    return [
        Server.objects.create(
            name=f"here{i}", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=owner
        )
        for i in range(start, start + count)
    ]


def _round(servers, capture) -> int:
    """One round of ``servers``; the statements it sent on this thread's connection
    (the readings run in worker threads on their own)."""
    fresh = list(
        Server.objects.filter(pk__in=[s.pk for s in servers]).select_related("owner", "monitor")
    )
    with CaptureQueriesContext(connection) as queries, capture(execute=True):
        result = collect_round(fresh)
    assert result.samples == len(servers), result.failed
    return len(queries)


def test_a_fleet_coming_online_is_stored_in_flat_statements(
    reseller, django_capture_on_commit_callbacks
):
    small, large = _fleet(reseller, 2), _fleet(reseller, 12, start=2)
    # First rounds: every server comes online (status changed, announced).
    assert _round(small, django_capture_on_commit_callbacks) == _round(
        large, django_capture_on_commit_callbacks
    )
    assert set(Server.objects.values_list("status", flat=True)) == {Server.Status.ONLINE}
    keys = LiveEvent.objects.filter(topic=SERVER_TOPIC).values_list("key", flat=True)
    assert sorted(keys) == sorted(s.uuid.hex for s in small + large)
    # Second rounds: statuses unchanged, rates from the stored counters.
    assert _round(small, django_capture_on_commit_callbacks) == _round(
        large, django_capture_on_commit_callbacks
    )
    assert LiveEvent.objects.filter(topic=SERVER_TOPIC).count() == 14
    assert LiveEvent.objects.filter(topic=SAMPLE_TOPIC).count() == 28
    for server in small + large:
        newest = Sample.objects.filter(server=server).order_by("-at").first()
        assert 0 <= newest.values["cpu"] <= 100 and newest.values["net_rx"] >= 0
        monitor = ServerMonitor.objects.get(server=server)
        assert monitor.latest == newest.values and monitor.last_sample_at == newest.at
        assert monitor.counters["cpu_total"] > 0 and monitor.failures == 0
