import pytest
from django.test import Client

from core.tasks import heartbeat

pytestmark = pytest.mark.django_db


def test_failing_without_worker_then_ok():
    resp = Client().get("/healthz")
    assert resp.status_code == 503
    assert resp.json() == {
        "status": "failing",
        "checks": {"database": "ok", "channel_layer": "ok", "worker": "failing"},
    }
    heartbeat()
    resp = Client().get("/healthz")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


def test_anonymous_callers_get_no_error_text_staff_do(monkeypatch, support):
    """Finding 15: the health check echoed exception text to anyone."""
    from tests.conftest import login

    async def broken():
        raise RuntimeError("redis://secret-host:6379 refused: password=hunter2")

    monkeypatch.setattr("core.health._probe_layer", broken)
    body = Client().get("/healthz").content.decode()
    assert "hunter2" not in body and "secret-host" not in body
    assert '"channel_layer": "failing"' in body
    staff = login(support).get("/healthz").json()
    assert "hunter2" in staff["details"]["channel_layer"]["error"]


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


def test_live_asks_nothing_but_the_process(monkeypatch):
    """A database outage must not make every web process look dead (and get restarted)."""

    def broken(*args, **kwargs):
        raise AssertionError("liveness must not run the component checks")

    monkeypatch.setattr("core.health.checks", broken)
    resp = Client().get("/healthz/live")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_ready_leaves_the_worker_out_and_fails_on_a_broken_layer(monkeypatch):
    resp = Client().get("/healthz/ready")  # no worker heartbeat at all
    assert resp.status_code == 200
    assert resp.json()["checks"] == {"database": "ok", "channel_layer": "ok"}

    async def broken():
        raise RuntimeError("redis down")

    monkeypatch.setattr("core.health._probe_layer", broken)
    resp = Client().get("/healthz/ready")
    assert resp.status_code == 503 and resp.json()["checks"]["channel_layer"] == "failing"
    assert "redis down" not in resp.content.decode()


def test_a_draining_process_is_not_ready(monkeypatch):
    monkeypatch.setattr("core.health._draining", False)
    assert Client().get("/healthz/ready").status_code == 200
    from core import health

    health.start_draining()
    resp = Client().get("/healthz/ready")
    assert resp.status_code == 503 and resp.json() == {"status": "draining"}
    assert Client().get("/healthz/live").status_code == 200
