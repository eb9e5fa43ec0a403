"""The alert engine: metric rules with a duration, offline servers, de-duplication,
acknowledgement, silences and maintenance, and the plug-in seam other apps use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEntry, LiveEvent
from monitoring import services
from monitoring.alerts import Finding, evaluate_alerts, register_source, sources
from monitoring.models import Alert, AlertRule, Delivery, NotificationChannel, Sample
from servers.models import Server

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def server(reseller):
    return Server.objects.create(
        name="web1", address="10.9.0.1", owner=reseller, status="online", location="fra"
    )


def _cpu(server, values, start=T0, every=30):
    Sample.objects.bulk_create(
        [
            Sample(server=server, at=start + timedelta(seconds=every * i), values={"cpu": v})
            for i, v in enumerate(values)
        ]
    )


def _rule(owner, **data):
    base = {"name": "CPU high", "kind": "metric", "metric": "cpu", "comparison": ">"}
    return services.do_create_rule(actor=owner, data={**base, **data})


def test_metric_rule_fires_after_its_duration_and_resolves(
    server, reseller, django_capture_on_commit_callbacks
):
    _rule(reseller, threshold=90, duration=300)
    _cpu(server, [95.0] * 9)  # 10:00:00 .. 10:04:00: not five minutes yet
    assert evaluate_alerts(T0 + timedelta(minutes=4)).fired == []
    _cpu(server, [96.0] * 3, start=T0 + timedelta(minutes=4, seconds=30))  # .. 10:05:30
    with django_capture_on_commit_callbacks(execute=True):
        fired = evaluate_alerts(T0 + timedelta(minutes=5, seconds=30)).fired
    assert [a.label for a in fired] == ["web1"]
    alert = fired[0]
    assert alert.state == "firing" and alert.value == 96.0 and "cpu is 96" in alert.message
    # De-duplicated: still firing, nothing new.
    assert evaluate_alerts(T0 + timedelta(minutes=5, seconds=40)).fired == []
    _cpu(server, [20.0], start=T0 + timedelta(minutes=6))
    with django_capture_on_commit_callbacks(execute=True):
        result = evaluate_alerts(T0 + timedelta(minutes=6, seconds=5))
    assert [a.pk for a in result.resolved] == [alert.pk]
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved_at is not None
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"monitoring.alert.firing", "monitoring.alert.resolved"} <= actions
    assert LiveEvent.objects.filter(topic="monitoring.alert", key=alert.uuid.hex).count() == 2
    # Fires again later: a new alert, the old one stays history.
    _cpu(server, [99.0], start=T0 + timedelta(minutes=7))
    assert len(evaluate_alerts(T0 + timedelta(minutes=7)).fired) == 0  # duration again
    assert Alert.objects.count() == 1


def test_one_dip_in_the_window_keeps_it_quiet(server, reseller):
    _rule(reseller, threshold=90, duration=120)
    _cpu(server, [95.0, 95.0, 50.0, 95.0, 95.0, 95.0])
    assert evaluate_alerts(T0 + timedelta(minutes=2, seconds=30)).fired == []


def test_offline_rule_per_location_and_scope_is_the_owners(server, reseller, customer, mallory):
    Server.objects.create(name="other", address="10.9.0.2", owner=reseller, location="ams")
    Server.objects.filter(pk=server.pk).update(status="offline")
    Server.objects.filter(name="other").update(status="offline")
    services.do_create_rule(
        actor=reseller,
        data={"name": "down", "kind": "server_offline", "scope": "location", "location": "fra"},
    )
    services.do_create_rule(actor=mallory, data={"name": "down", "kind": "server_offline"})
    fired = evaluate_alerts().fired
    assert [(a.owner, a.label) for a in fired] == [(reseller, "web1")]  # mallory sees none
    with pytest.raises(ValidationError) as err:
        services.do_create_rule(
            actor=mallory,
            data={"name": "x", "kind": "server_offline", "scope": "server", "server": server},
        )
    assert "server" in err.value.message_dict


def test_acknowledge_silence_and_maintenance_stop_notifications(server, reseller):
    channel = services.do_create_channel(
        actor=reseller,
        data={"name": "ops", "kind": "email", "target": "ops@example.com"},
    )
    rule = _rule(reseller, threshold=50, channels=[channel])
    _cpu(server, [80.0])
    alert = evaluate_alerts(T0).fired[0]
    assert Delivery.objects.filter(alert=alert, event="firing").count() == 1
    services.do_acknowledge_alert(alert, actor=reseller)
    assert alert.acknowledged_by == reseller
    services.do_silence_alert(alert, actor=reseller, data={"until": T0 + timedelta(days=400)})
    _cpu(server, [10.0], start=T0 + timedelta(seconds=30))
    evaluate_alerts(T0 + timedelta(seconds=31))
    assert not Delivery.objects.filter(event="resolved").exists()  # silenced
    with pytest.raises(ValidationError):
        services.do_silence_alert(alert, actor=reseller, data={"until": T0})
    # A server in maintenance: nothing about it fires (so nothing is sent); when the
    # maintenance ends a condition that still holds fires and notifies.
    Server.objects.filter(pk=server.pk).update(status="maintenance")
    _cpu(server, [90.0], start=T0 + timedelta(seconds=60))
    assert evaluate_alerts(T0 + timedelta(seconds=61)).fired == []
    Server.objects.filter(pk=server.pk).update(status="online")
    second = evaluate_alerts(T0 + timedelta(seconds=62)).fired[0]
    assert second.rule == rule and second.deliveries.filter(event="firing").count() == 1


def test_sources_from_other_apps_plug_in(reseller, monkeypatch):
    monkeypatch.setattr("monitoring.alerts._sources", dict(sources()))
    found = [Finding("backup:1", "site backup", "No backup for 2 days.")]
    register_source("backup_missing", lambda rule, now: list(found), label="Backup missing")
    services.do_create_rule(actor=reseller, data={"name": "backups", "kind": "backup_missing"})
    assert [a.message for a in evaluate_alerts().fired] == ["No backup for 2 days."]
    found.clear()
    assert len(evaluate_alerts().resolved) == 1


def test_rule_and_channel_input_is_checked(reseller, mallory):
    with pytest.raises(ValidationError) as err:
        services.do_create_rule(actor=reseller, data={"name": "x", "kind": "metric"})
    assert {"metric", "threshold"} <= set(err.value.message_dict)
    with pytest.raises(ValidationError):
        services.do_create_rule(actor=reseller, data={"name": "x", "kind": "nope"})
    with pytest.raises(ValidationError):
        services.do_create_rule(actor=reseller, data={"name": "x", "kind": "metric", "owner": 1})
    theirs = services.do_create_channel(
        actor=mallory, data={"name": "m", "kind": "email", "target": "m@example.com"}
    )
    with pytest.raises(ValidationError) as err:
        _rule(reseller, threshold=1, channels=[theirs])
    assert "channels" in err.value.message_dict
    bad = [
        {"kind": "email", "target": "not an address"},
        {"kind": "webhook", "target": "ftp://example.com/"},
        {"kind": "telegram", "target": "12345", "secret": "token"},
    ]
    for data in bad:
        with pytest.raises(ValidationError):
            services.do_create_channel(actor=reseller, data={"name": "c", **data})
    channel = services.do_create_channel(
        actor=reseller,
        data={"name": "t", "kind": "telegram", "target": "-100123", "secret": "1:" + "a" * 30},
    )
    assert NotificationChannel.objects.get(pk=channel.pk).secret == "1:" + "a" * 30
    assert AlertRule.objects.count() == 0


def test_zones_whose_nameservers_disagree_fire_for_their_owner_only(customer, mallory):
    from dns import services as dns_services
    from dns.models import Zone

    zone = dns_services.do_create_zone(actor=customer, data={"name": "shop.example"})
    Zone.objects.filter(pk=zone.pk).update(
        ns_status=Zone.NsStatus.MISMATCH, ns_message="ns2.example.net answers serial 1, not 2."
    )
    services.do_create_rule(actor=customer, data={"name": "NS", "kind": "ns_mismatch"})
    services.do_create_rule(actor=mallory, data={"name": "NS", "kind": "ns_mismatch"})
    fired = evaluate_alerts().fired
    assert [(a.rule.owner, a.label, a.message) for a in fired] == [
        (customer, "shop.example", "ns2.example.net answers serial 1, not 2.")
    ]
    Zone.objects.filter(pk=zone.pk).update(ns_status=Zone.NsStatus.OK, ns_message="")
    assert [a.label for a in evaluate_alerts().resolved] == ["shop.example"]
