"""Notifications against real receivers on loopback: an HTTP receiver checking the webhook's
HMAC signature, a local SMTP server (aiosmtpd), and a stand-in speaking Telegram's Bot API
(sendMessage). Alerts fire and resolve through the engine, deliveries run through django-q2
(sync mode) exactly as a worker runs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from monitoring import services
from monitoring.alerts import Finding, register_source, sources
from monitoring.models import Delivery

pytestmark = pytest.mark.django_db

SECRET = "webhook-secret-0123456789"
TOKEN = "123456:" + "A" * 35


class Receiver:
    """One HTTP server answering every POST with ``status`` and keeping what it got."""

    def __init__(self):
        self.status = 200
        self.requests: list[tuple[str, dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers), body))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def smtp():
    box = Mailbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's own check connects to it)
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def fire(monkeypatch, django_capture_on_commit_callbacks, q_sync):
    """Fire (then resolve) one alert of a rule with the given channels; deliveries run."""
    monkeypatch.setattr("monitoring.alerts._sources", dict(sources()))
    found: list[Finding] = []
    register_source("test_kind", lambda rule, now: list(found), label="Test")

    def run(owner, channels, message, *, resolve=False):
        from monitoring.alerts import evaluate_alerts

        services.do_create_rule(
            actor=owner, data={"name": "Site down", "kind": "test_kind", "channels": channels}
        )
        found.append(Finding("site:1", "shop.example.com", message))
        with django_capture_on_commit_callbacks(execute=True):
            alert = evaluate_alerts().fired[0]
        if resolve:
            found.clear()
            with django_capture_on_commit_callbacks(execute=True):
                evaluate_alerts()
        return alert

    return run


def test_webhook_is_signed_and_resolution_follows(receiver, admin_user, fire):
    receiver.requests.clear()
    receiver.status = 200
    channel = services.do_create_channel(
        actor=admin_user,
        data={
            "name": "hook",
            "kind": "webhook",
            "target": receiver.url + "/hook",
            "secret": SECRET,
        },
    )
    alert = fire(admin_user, [channel], "shop.example.com answers 502", resolve=True)
    assert [json.loads(b)["event"] for _p, _h, b in receiver.requests] == ["firing", "resolved"]
    path, headers, body = receiver.requests[0]
    assert path == "/hook"
    expected = hmac.new(
        SECRET.encode(), headers["X-Panel-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["X-Panel-Signature"] == f"sha256={expected}"
    data = json.loads(body)
    assert data["alert"] == alert.uuid.hex and data["message"] == "shop.example.com answers 502"
    assert set(Delivery.objects.values_list("state", "response_status")) == {("sent", 200)}


def test_email_arrives_through_smtp(smtp, settings, reseller, fire):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    channel = services.do_create_channel(
        actor=reseller, data={"name": "mail", "kind": "email", "target": "ops@example.com"}
    )
    fire(reseller, [channel], "shop.example.com answers 502")
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message.rcpt_tos == ["ops@example.com"]
    content = message.content.decode()
    assert "[FIRING] Site down: shop.example.com" in content and "answers 502" in content
    assert Delivery.objects.get().state == "sent"


def test_telegram_gets_masked_text(receiver, settings, customer, fire):
    receiver.requests.clear()
    receiver.status = 200
    settings.PANEL_TELEGRAM_API_URL = receiver.url
    channel = services.do_create_channel(
        actor=customer,
        data={"name": "tg", "kind": "telegram", "target": "-1001234", "secret": TOKEN},
    )
    fire(customer, [channel], "shop.example.com at 203.0.113.7 and 2001:db8::1 answers 502")
    path, _headers, body = receiver.requests[0]
    assert path == f"/bot{TOKEN}/sendMessage"
    sent = json.loads(body)
    assert sent["chat_id"] == "-1001234"
    text = sent["text"]
    assert "s….e….com" in text and "[address]" in text
    for secret in ("shop.example.com", "example", "203.0.113.7", "2001:db8::1"):
        assert secret not in text


def test_failing_receiver_is_retried_with_backoff_then_failed(receiver, admin_user, fire):
    receiver.requests.clear()
    receiver.status = 503
    channel = services.do_create_channel(
        actor=admin_user, data={"name": "hook", "kind": "webhook", "target": receiver.url}
    )
    fire(admin_user, [channel], "down")
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.response_status) == ("pending", 1, 503)
    first_wait = delivery.next_attempt_at - delivery.created_at
    later = delivery.next_attempt_at
    for _ in range(4):
        services.deliver(delivery, now=later)
        later = delivery.next_attempt_at or later
    assert (delivery.state, delivery.attempts) == ("failed", 5)
    assert "503" in delivery.last_error and len(receiver.requests) == 5
    assert first_wait.total_seconds() >= 29


def test_customer_webhook_cannot_reach_private_addresses(receiver, customer, fire):
    receiver.requests.clear()
    channel = services.do_create_channel(
        actor=customer, data={"name": "hook", "kind": "webhook", "target": receiver.url}
    )
    fire(customer, [channel], "down")
    delivery = Delivery.objects.get()
    assert delivery.state == "failed" and "not a public address" in delivery.last_error
    assert receiver.requests == []


def test_send_test_goes_through_the_channel(
    receiver, admin_user, django_capture_on_commit_callbacks, q_sync
):
    receiver.requests.clear()
    receiver.status = 200
    channel = services.do_create_channel(
        actor=admin_user, data={"name": "hook", "kind": "webhook", "target": receiver.url}
    )
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.do_send_test(channel, actor=admin_user)
    delivery.refresh_from_db()
    assert delivery.state == "sent"
    assert json.loads(receiver.requests[0][2])["event"] == "test"


def test_webhooks_go_to_the_address_that_was_checked(receiver, admin_user, monkeypatch, fire):
    """DNS rebinding: the name is resolved once, and the request goes to that address even if
    the name answers differently when the connection opens."""
    import socket

    port = int(receiver.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])  # first answer: the receiver; any later one: nobody listens

    def rebinding(host, *args, **kwargs):
        if host == "hooks.rebind.test":
            address = next(answers, "127.0.0.2")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    receiver.requests.clear()
    receiver.status = 200
    channel = services.do_create_channel(
        actor=admin_user,
        data={"name": "hook", "kind": "webhook", "target": f"http://hooks.rebind.test:{port}/in"},
    )
    fire(admin_user, [channel], "rebinding")
    assert [p for p, _h, _b in receiver.requests] == ["/in"]
    assert receiver.requests[0][1]["Host"] == f"hooks.rebind.test:{port}"
    assert set(Delivery.objects.values_list("state", flat=True)) == {"sent"}


def test_customer_destinations_are_pinned_to_the_public_address_checked(customer, monkeypatch):
    """A customer's name that first resolves to a public address and then to loopback is
    still sent to the public one (which cannot be reached here), never to loopback."""
    from monitoring import notify

    answers = iter(["93.184.215.14"])
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "hooks.rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.1"), 80))]
        return real(host, *args, **kwargs)

    tried = []

    def no_network(where, *args, **kwargs):
        tried.append(where[0])
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket, "create_connection", no_network)
    notice = notify.Notice(title="t", text="t", event="test", data={})
    with pytest.raises(notify.NotifyError, match="cannot reach"):
        notify.send_webhook("http://hooks.rebind.test/in", "", notice, customer)
    assert tried == ["93.184.215.14"]


def _deliver_in_doomed_worker(delivery_id: int, where: str) -> None:
    """Run the delivery task in a forked worker that the kernel kills (SIGKILL) ``before``
    the request leaves, or ``after`` the receiver got it but before the answer is read."""
    import http.client
    import os

    from django.db import connections

    from monitoring import notify, tasks
    from tests.integration.faults import die

    connections.close_all()
    pid = os.fork()
    if pid == 0:
        try:
            if where == "before":
                notify.check_destination = lambda *a, **k: die()
            else:
                http.client.HTTPConnection.getresponse = lambda self, *a, **k: die()
            tasks.deliver(delivery_id)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), status


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_delivery_whose_worker_is_killed_is_sent_again_not_lost(receiver, admin_user, where):
    """Killed before sending: nothing arrived, and one retry after the lease sends it once.
    Killed after the receiver got it: the retry sends it again with the same
    X-Panel-Delivery, so the receiver can tell (at least once, never lost)."""
    from datetime import timedelta

    from django.utils import timezone

    from monitoring import tasks
    from monitoring.models import Alert, AlertRule

    receiver.requests.clear()
    receiver.status = 200
    channel = services.do_create_channel(
        actor=admin_user, data={"name": "hook", "kind": "webhook", "target": receiver.url}
    )
    rule = AlertRule.objects.create(owner=admin_user, name="r", kind="server_offline")
    alert = Alert.objects.create(
        rule=rule,
        owner=admin_user,
        subject="s:1",
        label="web1",
        message="down",
        kind="server_offline",
    )
    delivery = Delivery.objects.create(
        channel=channel, alert=alert, event="firing", created_at=timezone.now()
    )

    _deliver_in_doomed_worker(delivery.pk, where)
    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.attempts == 1
    assert len(receiver.requests) == (0 if where == "before" else 1)
    # Not due again while the killed attempt's lease runs (no second worker sends it now).
    assert tasks.retry_deliveries().startswith("0 retried")
    later = delivery.next_attempt_at + timedelta(seconds=1)
    from unittest import mock

    with mock.patch("django.utils.timezone.now", return_value=later):
        assert tasks.retry_deliveries() == "1 retried, 1 sent"
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("sent", 2)
    keys = {h["X-Panel-Delivery"] for _p, h, _b in receiver.requests}
    assert keys == {delivery.uuid.hex}
    # The signed body says the same, so a receiver deduplicates on what it verified.
    assert {json.loads(b)["id"] for _p, _h, b in receiver.requests} == {delivery.uuid.hex}
    assert len(receiver.requests) == (1 if where == "before" else 2)
