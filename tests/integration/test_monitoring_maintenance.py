"""Maintenance windows with the real collector: a dead server inside a window stays in
maintenance and raises nothing; once the window has ended the next rounds take it offline
and the offline alert fires (and notifies). A live server keeps being collected."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEntry
from monitoring import services
from monitoring.alerts import evaluate_alerts
from monitoring.collector import collect_round
from monitoring.models import Alert, Delivery, MaintenanceWindow, Sample, ServerMonitor
from servers import connection
from servers.models import Server
from tests.integration.conftest import SSH_HOST, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PANEL_MONITORING_TIMEOUT = 2
    settings.PANEL_MONITORING_OFFLINE_AFTER = 2
    yield
    for key in list(connection._pool):
        with contextlib.suppress(Exception):
            connection._pool.pop(key).close()


def test_dead_server_in_a_window_raises_nothing_until_it_ends(ssh_server, admin_user):
    closed = free_port(SSH_HOST)  # nothing listens: refused at once
    dead = Server.objects.create(
        name="dead1", owner=admin_user, address=SSH_HOST, ssh_port=closed, private_key="x"
    )
    channel = services.do_create_channel(
        actor=admin_user, data={"name": "ops", "kind": "email", "target": "ops@example.com"}
    )
    services.do_create_rule(
        actor=admin_user,
        data={"name": "down", "kind": "server_offline", "scope": "all", "channels": [channel]},
    )
    now = timezone.now()
    window = services.do_create_window(
        actor=admin_user,
        data={
            "name": "upgrade",
            "scope": "all",
            "starts_at": now - timedelta(minutes=1),
            "ends_at": now + timedelta(hours=1),
        },
    )
    for _ in range(3):  # past PANEL_MONITORING_OFFLINE_AFTER failed rounds
        result = collect_round()
        assert "dead1" in result.failed and result.went_offline == []
        assert evaluate_alerts().fired == []
    dead.refresh_from_db()
    ssh_server.refresh_from_db()
    assert dead.status == ssh_server.status == Server.Status.MAINTENANCE
    assert ServerMonitor.objects.get(server=dead).failures == 3
    assert Sample.objects.filter(server=ssh_server).count() == 3  # still collected
    assert not Alert.objects.exists() and not Delivery.objects.exists()
    assert AuditEntry.objects.filter(action="monitoring.maintenance.start").count() == 2

    # The window ends: the statuses go back to the collector.
    services.do_update_window(window, actor=admin_user, data={"ends_at": timezone.now()})
    result = collect_round()
    assert result.went_offline == ["dead1"] and result.came_online == ["web1"]
    assert AuditEntry.objects.filter(action="monitoring.maintenance.end").count() == 2
    fired = evaluate_alerts().fired
    assert [a.label for a in fired] == ["dead1"]
    assert Delivery.objects.filter(alert=fired[0], event="firing").count() == 1
    assert MaintenanceWindow.objects.get(pk=window.pk).current_state == "ended"
