"""Integrators' webhooks against a real HTTP receiver on loopback that checks every
signature: events made by real flows (an operation finishing through django-q2's worker
code, an alert firing through the alert engine, a VPS lifecycle event), retries with
backoff, receivers that are down or refuse, and destinations a customer may not reach."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.operations import start_operation
from hooks import dispatch, services
from hooks.models import Delivery, Event

pytestmark = pytest.mark.django_db

SECRET = "integrator-secret-0123456789"


class Receiver:
    """An HTTP server that answers POSTs with the next status in ``statuses`` (then 200),
    verifies each signature as an integrator would, and keeps what it got."""

    def __init__(self):
        self.statuses: list[int] = []
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stamp = self.headers.get("X-Panel-Timestamp", "")
                mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(body),
                        "valid": hmac.compare_digest(
                            self.headers.get("X-Panel-Signature", ""), "sha256=" + mac.hexdigest()
                        )
                        and abs(time.time() - int(stamp or 0)) < 300,
                    }
                )
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, kind: str) -> list[dict]:
        return [r for r in self.requests if r["body"]["type"] == kind]


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def fresh(receiver):
    receiver.requests.clear()
    receiver.statuses.clear()
    return receiver


def hook_for(owner, admin, url, events, **extra):
    """A webhook of ``owner``'s; an administrator allows the loopback receiver."""
    hook = services.do_create_webhook(
        actor=admin,
        data={"name": "erp", "url": url, "events": events, "secret": SECRET, **extra},
    )
    if owner != admin:
        type(hook).objects.filter(pk=hook.pk).update(owner=owner)
        hook.refresh_from_db()
    services.do_update_webhook(hook, actor=admin, data={"allow_private": True})
    return hook


def test_a_finished_operation_reaches_the_receiver_signed(
    fresh, admin_user, customer, mallory, q_sync, django_capture_on_commit_callbacks
):
    hook_for(customer, admin_user, fresh.url + "/in", ["operation.succeeded"])
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch()  # the cursor starts here
        op = start_operation(kind="test.steps", task="tests.support.steps", owner=customer)
        start_operation(kind="test.steps", task="tests.support.steps", owner=mallory)
    op.refresh_from_db()
    assert op.state == "succeeded"
    got = fresh.of_type("operation.succeeded")
    assert len(got) == 1, fresh.requests  # mallory's operation is not the customer's to hear
    request = got[0]
    assert request["valid"] and request["path"] == "/in"
    body = request["body"]
    event = Event.objects.get(type="operation.succeeded", object_id=str(op.uuid))
    assert body["id"] == str(event.uuid) and body["timestamp"]
    assert body["data"]["operation"]["uuid"] == str(op.uuid)
    assert body["data"]["operation"]["state"] == "succeeded"
    delivery = Delivery.objects.get(event=event)
    assert request["headers"]["X-Panel-Delivery"] == delivery.uuid.hex
    assert request["headers"]["X-Panel-Event"] == "operation.succeeded"
    assert (delivery.state, delivery.response_status, delivery.attempts) == ("sent", 200, 1)


def test_a_failed_operation_is_its_own_event(
    fresh, admin_user, q_sync, django_capture_on_commit_callbacks
):
    hook_for(admin_user, admin_user, fresh.url, ["operation.failed"])
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch()
        op = start_operation(kind="test.boom", task="tests.support.boom", owner=admin_user)
    (request,) = fresh.of_type("operation.failed")
    assert request["valid"]
    assert request["body"]["data"]["operation"]["uuid"] == str(op.uuid)
    assert request["body"]["data"]["operation"]["error"]


def test_an_alert_firing_and_resolving(
    fresh, admin_user, reseller, customer, monkeypatch, q_sync, django_capture_on_commit_callbacks
):
    from monitoring import services as monitoring
    from monitoring.alerts import Finding, evaluate_alerts, register_source, sources

    monkeypatch.setattr("monitoring.alerts._sources", dict(sources()))
    found = [Finding("site:1", "shop.example.com", "answers 502")]
    register_source("hook_kind", lambda rule, now: list(found), label="Test")
    # The customer's reseller hears its customer's alerts.
    hook_for(reseller, admin_user, fresh.url, ["alert.fired", "alert.resolved"])
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch()
        monitoring.do_create_rule(actor=customer, data={"name": "Shop", "kind": "hook_kind"})
    with django_capture_on_commit_callbacks(execute=True):
        alert = evaluate_alerts().fired[0]
    found.clear()
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_alerts()
    types = [r["body"]["type"] for r in fresh.requests]
    assert types == ["alert.fired", "alert.resolved"]
    assert all(r["valid"] for r in fresh.requests)
    fired = fresh.requests[0]["body"]["data"]["alert"]
    assert fired["uuid"] == str(alert.uuid) and fired["message"] == "answers 502"
    assert fresh.requests[1]["body"]["data"]["alert"]["state"] == "resolved"


def test_a_receiver_failing_is_retried_with_backoff(
    fresh, admin_user, q_sync, django_capture_on_commit_callbacks
):
    hook = hook_for(admin_user, admin_user, fresh.url, ["operation.succeeded"])
    fresh.statuses[:] = [503, 500]
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.do_send_test(hook, actor=admin_user)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.response_status) == ("pending", 1, 503)
    first_wait = delivery.next_attempt_at - delivery.created_at
    assert timedelta(seconds=29) <= first_wait <= timedelta(seconds=60)
    # Not due yet: nothing is sent.
    assert services.retry_due(now=delivery.created_at + timedelta(seconds=5)) == []
    services.retry_due(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.response_status) == ("pending", 2, 500)
    second_wait = delivery.next_attempt_at - (first_wait + delivery.created_at)
    assert second_wait >= 2 * timedelta(seconds=29)  # exponential
    services.retry_due(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.response_status) == ("sent", 3, 200)
    ids = {r["headers"]["X-Panel-Delivery"] for r in fresh.requests}
    bodies = {json.dumps(r["body"], sort_keys=True) for r in fresh.requests}
    assert len(fresh.requests) == 3 and ids == {delivery.uuid.hex} and len(bodies) == 1
    assert all(r["valid"] for r in fresh.requests)


def test_a_refusing_receiver_fails_at_once_and_a_dead_one_is_retried(
    fresh, admin_user, q_sync, django_capture_on_commit_callbacks
):
    hook = hook_for(admin_user, admin_user, fresh.url, ["operation.succeeded"])
    fresh.statuses[:] = [410]
    with django_capture_on_commit_callbacks(execute=True):
        refused = services.do_send_test(hook, actor=admin_user)
    refused.refresh_from_db()
    assert (refused.state, refused.response_status) == ("failed", 410)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    services.do_update_webhook(hook, actor=admin_user, data={"url": closed})
    with django_capture_on_commit_callbacks(execute=True):
        lost = services.do_send_test(hook, actor=admin_user)
    lost.refresh_from_db()
    assert lost.state == "pending" and lost.next_attempt_at and "cannot reach" in lost.last_error


def test_customers_cannot_send_to_private_addresses(fresh, customer, admin_user, q_sync):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        services.do_create_webhook(
            actor=customer,
            data={"name": "x", "url": fresh.url, "events": ["alert.fired"], "secret": SECRET},
        )
    assert "not a public address" in str(refused.value)
    with pytest.raises(ValidationError) as not_theirs:
        services.do_create_webhook(
            actor=customer,
            data={
                "name": "x",
                "url": "https://hooks.example.com/",
                "events": ["alert.fired"],
                "secret": SECRET,
                "allow_private": True,
            },
        )
    assert "allow_private" in not_theirs.value.message_dict
    # Allowed by an administrator, then pointed elsewhere by its owner: the allowance goes.
    hook = hook_for(customer, admin_user, fresh.url, ["alert.fired"])
    assert hook.allow_private
    with pytest.raises(ValidationError):
        services.do_update_webhook(hook, actor=customer, data={"url": fresh.url + "/other"})


def test_a_name_resolving_to_loopback_is_refused_at_send_time(
    fresh, customer, admin_user, q_sync, django_capture_on_commit_callbacks
):
    """Checked at every send, on the addresses the request then goes to."""
    hook = hook_for(customer, admin_user, fresh.url, ["alert.fired"])
    port = fresh.server.server_address[1]
    type(hook).objects.filter(pk=hook.pk).update(
        allow_private=False, url=f"http://localhost:{port}/"
    )
    hook.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.do_send_test(hook, actor=customer)
    delivery.refresh_from_db()
    assert delivery.state == "failed" and "not a public address" in delivery.last_error
    assert fresh.requests == []


def test_vps_state_changes_from_libvirt_events(
    fresh, admin_user, customer, q_sync, django_capture_on_commit_callbacks
):
    from servers.models import Server
    from vps.listener import apply_event
    from vps.models import Hypervisor, Vps, VpsPlan

    server = Server.objects.create(name="hv", address="127.0.0.1", owner=admin_user)
    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    plan = VpsPlan.objects.create(name="small", owner=admin_user)
    vps = Vps.objects.create(
        hostname="web1", owner=customer, plan=plan, hypervisor=hv, state="running"
    )
    hook_for(customer, admin_user, fresh.url, ["vps.state_changed"])
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch()
        apply_event(hv.pk, f"vps-{vps.uuid.hex}", "STOPPED")
    with django_capture_on_commit_callbacks(execute=True):
        apply_event(hv.pk, f"vps-{vps.uuid.hex}", "STARTED")
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch()  # read again (the rescan): nothing new
    states = [
        (r["body"]["data"]["vps"]["previous_state"], r["body"]["data"]["vps"]["state"])
        for r in fresh.requests
    ]
    assert states == [(None, "stopped"), ("stopped", "running")]
    assert all(r["valid"] for r in fresh.requests)


def test_a_delivery_whose_worker_died_or_whose_task_was_lost_is_sent_later(fresh, admin_user):
    """Without q_sync the delivery task only sits in the queue: as if the worker never ran
    it. A worker killed after claiming an attempt leaves a lease; both are picked up by the
    minutely retry once due, and sent once."""
    from django.utils import timezone

    hook = hook_for(admin_user, admin_user, fresh.url, ["operation.succeeded"])
    lost = services.do_send_test(hook, actor=admin_user)
    died = services.do_send_test(hook, actor=admin_user)
    now = timezone.now()
    lease = now + timedelta(minutes=2)
    Delivery.objects.filter(pk=died.pk).update(attempts=1, next_attempt_at=lease)  # claimed
    assert services.retry_due(now=now) == []  # the lost one is not a minute old yet
    services.retry_due(now=lease)
    states = dict(Delivery.objects.values_list("pk", "state"))
    assert states == {lost.pk: "sent", died.pk: "sent"}
    assert sorted(r["headers"]["X-Panel-Delivery"] for r in fresh.requests) == sorted(
        [lost.uuid.hex, died.uuid.hex]
    )
    assert services.retry_due(now=lease + timedelta(hours=1)) == []  # nothing twice
