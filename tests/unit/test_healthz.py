import pytest
from django.test import Client

from core.tasks import heartbeat

pytestmark = pytest.mark.django_db


def test_degraded_without_worker_then_ok():
    resp = Client().get("/healthz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["checks"]["database"]["ok"] and body["checks"]["channel_layer"]["ok"]
    assert body["checks"]["worker"]["ok"] is False
    heartbeat()
    resp = Client().get("/healthz")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


def test_heartbeat_is_scheduled():
    from django_q.models import Schedule

    s = Schedule.objects.get(name="panel:heartbeat")
    assert s.func == "core.tasks.heartbeat" and s.minutes == 1


def test_security_headers(customer):
    from tests.conftest import login

    resp = login(customer).get("/operations/")
    csp = resp["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp["X-Frame-Options"] == "DENY"
    assert resp["Referrer-Policy"] == "same-origin"
