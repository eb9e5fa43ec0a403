"""Monitoring's API (/checks/, /alerts/, /alert-rules/, /channels/), portal pages, the
public status page and /metrics: visibility from the policy, flat query counts, secrets
never returned."""

from __future__ import annotations

import hashlib

import pytest
from django.test import Client

from monitoring import services
from monitoring.alerts import evaluate_alerts
from monitoring.models import Alert, Check, CheckResult, NotificationChannel, ServerMonitor
from servers.models import Server
from tests.conftest import login, queries_for

pytestmark = pytest.mark.django_db
BOT = "123456:" + "B" * 35


def _checks(owner, n):
    return [
        services.do_create_check(
            actor=owner,
            data={"name": f"site {i}", "target": f"https://s{i}.example.com/", "public": i == 0},
        )
        for i in range(n)
    ]


def test_api_crud_and_visibility(customer, mallory, reseller):
    client = login(customer)
    made = client.post(
        "/api/v1/channels/",
        {"name": "tg", "kind": "telegram", "target": "-100", "secret": BOT},
        content_type="application/json",
    )
    assert made.status_code == 201, made.content
    assert "secret" not in made.json() and BOT not in made.content.decode()
    channel = made.json()["uuid"]
    rule = client.post(
        "/api/v1/alert-rules/",
        {"name": "down", "kind": "check_failing", "channels": [channel]},
        content_type="application/json",
    )
    assert rule.status_code == 201, rule.content
    bad = client.post(
        "/api/v1/alert-rules/",
        {"name": "x", "kind": "metric", "metric": "cpu"},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "threshold" in bad.json()
    check = client.post(
        "/api/v1/checks/",
        {"name": "shop", "kind": "tcp", "target": "shop.example.com:443"},
        content_type="application/json",
    )
    assert check.status_code == 201, check.content
    assert check.json()["uptime"] == {"24h": None, "30d": None}
    # The reseller sees its customer's; mallory sees nothing and reaches nothing.
    assert len(login(reseller).get("/api/v1/checks/").json()["results"]) == 1
    other = login(mallory)
    for path in ("channels", "alert-rules", "checks"):
        assert other.get(f"/api/v1/{path}/").json()["results"] == []
    assert other.get(f"/api/v1/channels/{channel}/").status_code == 404
    assert other.post(f"/api/v1/channels/{channel}/test/").status_code == 404
    assert client.post(f"/api/v1/channels/{channel}/test/").status_code == 202


def test_alert_acknowledge_and_silence_through_the_api(customer, mallory):
    check = _checks(customer, 1)[0]
    Check.objects.filter(pk=check.pk).update(status="down", last_error="refused")
    services.do_create_rule(actor=customer, data={"name": "c", "kind": "check_failing"})
    alert = evaluate_alerts().fired[0]
    assert login(mallory).post(f"/api/v1/alerts/{alert.uuid}/acknowledge/").status_code == 404
    client = login(customer)
    listed = client.get("/api/v1/alerts/?state=firing").json()["results"]
    assert [a["label"] for a in listed] == ["site 0"]
    done = client.post(f"/api/v1/alerts/{alert.uuid}/acknowledge/").json()
    assert done["acknowledged_by"] == customer.email
    until = "2099-01-01T00:00:00Z"
    resp = client.post(
        f"/api/v1/alerts/{alert.uuid}/silence/", {"until": until}, content_type="application/json"
    )
    assert resp.status_code == 400  # more than a year ahead
    assert client.patch(f"/api/v1/alerts/{alert.uuid}/", {}).status_code == 405


def test_list_query_counts_stay_flat(customer):
    client = login(customer)
    services.do_create_rule(actor=customer, data={"name": "c", "kind": "check_failing"})

    def add(n):
        checks = _checks(customer, n)
        CheckResult.objects.bulk_create(
            [CheckResult(uptime_check=c, ok=True, response_ms=5) for c in checks]
        )
        Check.objects.update(status="down")
        evaluate_alerts()

    def count(url):
        return queries_for(client, url)

    urls = ["/api/v1/checks/", "/monitoring/checks/", "/api/v1/alerts/", "/monitoring/"]
    add(2)
    few = {u: count(u) for u in urls}
    add(8)
    assert Alert.objects.count() == 10
    assert {u: count(u) for u in urls} == few


def test_portal_pages_render_and_forms_go_through_services(customer, mallory):
    client = login(customer)
    for url in (
        "/monitoring/",
        "/monitoring/rules/",
        "/monitoring/rules/new/",
        "/monitoring/channels/",
        "/monitoring/channels/new/",
        "/monitoring/checks/",
        "/monitoring/checks/new/",
        "/monitoring/status/",
    ):
        assert client.get(url).status_code == 200, url
    resp = client.post(
        "/monitoring/channels/new/",
        {
            "name": "hook",
            "kind": "webhook",
            "target": "https://hooks.example.com/x",
            "secret": "s3cr3t-value",
            "enabled": "on",
        },
    )
    assert resp.status_code == 302
    channel = NotificationChannel.objects.get()
    page = client.get(channel.get_absolute_url()).content.decode()
    assert "s3cr3t-value" not in page and "Send test" in page
    resp = client.post(
        "/monitoring/checks/new/",
        {
            "name": "x",
            "kind": "http",
            "target": "ftp://x",
            "dns_type": "A",
            "interval": 60,
            "timeout": 10,
            "retries": 2,
        },
    )
    assert resp.status_code == 400 and b"http:// or https://" in resp.content
    assert login(mallory).get(channel.get_absolute_url()).status_code == 404


def test_public_status_page_shows_only_public_checks(customer):
    checks = _checks(customer, 2)
    Check.objects.filter(pk=checks[0].pk).update(status="up")
    page = services.do_save_status_page(actor=customer, data={"title": "Shop status"})
    assert len(page.slug) >= 40
    body = Client().get(f"/monitoring/status/{page.slug}/").content.decode()
    assert "Shop status" in body and "site 0" in body
    assert "site 1" not in body and "s0.example.com" not in body
    assert Client().get("/monitoring/status/not-a-real-slug/").status_code == 404
    services.do_save_status_page(actor=customer, data={"enabled": False})
    assert Client().get(f"/monitoring/status/{page.slug}/").status_code == 404


def test_metrics_export_needs_the_token(settings, admin_user):
    server = Server.objects.create(name="m1", address="10.9.0.1", owner=admin_user, status="online")
    ServerMonitor.objects.create(server=server, latest={"cpu": 12.5})
    _checks(admin_user, 1)
    Check.objects.update(status="up", last_response_ms=120.0, tls_days_left=20.5)
    client = Client()
    settings.PANEL_METRICS_TOKEN_SHA256 = ""
    assert client.get("/metrics").status_code == 404
    settings.PANEL_METRICS_TOKEN_SHA256 = hashlib.sha256(b"scrape-me").hexdigest()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    resp = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/plain")
    text = resp.content.decode()
    assert 'panel_server_metric{metric="cpu",server="m1"} 12.5' in text
    assert 'panel_server_status{server="m1",status="online"} 1.0' in text
    assert 'panel_operations{state="queued"} 0.0' in text
    assert "panel_queue_depth" in text and "panel_alerts_firing 0.0" in text
    assert "panel_check_up{" in text and "panel_check_tls_days_left{" in text
    assert 'panel_component_up{component="database"} 1.0' in text
