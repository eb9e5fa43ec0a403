"""Webhooks: the API and portal pages (policy, secrets, audit, flat queries), and the
fan-out's routing: who hears which event, once, and nothing from before a first webhook."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from accounts import services as account_services
from core import audit
from core.models import AuditEntry
from core.operations import start_operation
from hooks import dispatch, services
from hooks.models import Delivery, Event, Webhook
from tests.conftest import login, make_user

pytestmark = pytest.mark.django_db

SECRET = "integrator-secret-0123456789"
URL = "https://hooks.example.com/in"
DATA = {"name": "erp", "url": URL, "events": ["operation.succeeded"], "secret": SECRET}


@pytest.fixture(autouse=True)
def _public_example(monkeypatch):
    """hooks.example.com resolves to a public documentation address here, offline."""
    import socket

    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "hooks.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def bearer(user, scope="write"):
    token, raw = account_services.do_create_token(
        user, actor=user, data={"name": "ci", "scope": scope}
    )
    return token, {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_api_create_binds_the_token_and_never_returns_the_secret(client, customer):
    token, auth = bearer(customer)
    resp = client.post("/api/v1/webhooks/", DATA, content_type="application/json", **auth)
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert SECRET not in resp.content.decode() and "secret" not in body
    assert body["token"] == str(token.uuid) and body["events"] == ["operation.succeeded"]
    hook = Webhook.objects.get(uuid=body["uuid"])
    assert hook.owner == customer and hook.token == token and hook.secret == SECRET
    assert AuditEntry.objects.filter(action="webhook.create", object_id=str(hook.uuid)).exists()
    listed = client.get("/api/v1/webhooks/", **auth)
    assert SECRET not in listed.content.decode()
    # Deleting the token deletes its webhooks.
    token.delete()
    assert not Webhook.objects.filter(pk=hook.pk).exists()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"events": ["nope"]}, "events"),
        ({"events": []}, "events"),
        ({"url": "ftp://hooks.example.com/"}, "url"),
        ({"url": "http://127.0.0.1:9/"}, "url"),
        ({"secret": "short"}, "secret"),
        ({"allow_private": True}, "allow_private"),
    ],
)
def test_api_refuses_bad_input_with_field_errors(change, field, customer):
    _token, auth = bearer(customer)
    resp = login(customer).post(
        "/api/v1/webhooks/", {**DATA, **change}, content_type="application/json", **auth
    )
    assert resp.status_code == 400 and field in resp.json(), resp.content


def test_a_read_token_cannot_create(client, customer):
    _token, auth = bearer(customer, scope="read")
    resp = client.post("/api/v1/webhooks/", DATA, content_type="application/json", **auth)
    assert resp.status_code == 403 and not Webhook.objects.exists()


def test_others_webhooks_are_404_and_staff_read_only(customer, mallory, support, admin_user):
    hook = services.do_create_webhook(actor=customer, data=DATA)
    url = f"/api/v1/webhooks/{hook.uuid}/"
    for outsider in (mallory,):
        c = login(outsider)
        assert c.get(url).status_code == 404
        assert c.patch(url, {"name": "x"}, content_type="application/json").status_code == 404
        assert c.post(url + "test/").status_code == 404
        assert c.get(f"/hooks/{hook.uuid}/").status_code == 404
        assert c.post(f"/hooks/{hook.uuid}/test/").status_code == 404
    assert login(support).get(url).status_code == 200
    assert login(support).delete(url).status_code == 404
    assert Webhook.objects.filter(pk=hook.pk).exists()
    assert login(admin_user).delete(url).status_code == 204
    assert AuditEntry.objects.filter(action="webhook.delete").exists()


def test_send_test_records_a_delivery_and_lists_it(customer):
    hook = services.do_create_webhook(actor=customer, data=DATA)
    c = login(customer)
    resp = c.post(f"/api/v1/webhooks/{hook.uuid}/test/")
    assert resp.status_code == 202
    body = resp.json()
    assert body["event"]["type"] == "webhook.test" and body["event"]["id"]
    assert body["state"] == "pending"
    listed = c.get(f"/api/v1/webhook-deliveries/?webhook={hook.uuid}").json()
    assert [d["uuid"] for d in listed["results"]] == [body["uuid"]]
    assert AuditEntry.objects.filter(action="webhook.test").exists()
    assert (
        login(make_user("x@example.com", "customer"))
        .get(f"/api/v1/webhook-deliveries/{body['uuid']}/")
        .status_code
        == 404
    )


def test_lists_take_the_same_queries_for_many_rows(customer):
    c = login(customer)

    def counts():
        with CaptureQueriesContext(connection) as hooks:
            assert c.get("/api/v1/webhooks/").status_code == 200
        with CaptureQueriesContext(connection) as deliveries:
            assert c.get("/api/v1/webhook-deliveries/").status_code == 200
        with CaptureQueriesContext(connection) as page:
            assert c.get("/hooks/").status_code == 200
        return len(hooks), len(deliveries), len(page)

    hook = services.do_create_webhook(actor=customer, data=DATA)
    services.do_send_test(hook, actor=customer)
    few = counts()
    for n in range(5):
        more = services.do_create_webhook(actor=customer, data={**DATA, "name": f"h{n}"})
        services.do_send_test(more, actor=customer)
    assert counts() == few


def test_portal_create_edit_test_and_delete(customer):
    c = login(customer)
    assert "allow_private" not in c.get("/hooks/new/").content.decode()
    resp = c.post(
        "/hooks/new/",
        {
            "name": "erp",
            "url": URL,
            "events": ["alert.fired", "vps.state_changed"],
            "secret": SECRET,
            "enabled": "on",
        },
    )
    assert resp.status_code == 302, resp.content
    hook = Webhook.objects.get()
    assert hook.events == ["alert.fired", "vps.state_changed"] and hook.enabled
    page = c.get(f"/hooks/{hook.uuid}/").content.decode()
    assert SECRET not in page and "Send test" in page
    assert c.post(f"/hooks/{hook.uuid}/test/").status_code == 302
    assert "webhook.test" in c.get(f"/hooks/{hook.uuid}/").content.decode()
    resp = c.post(
        f"/hooks/{hook.uuid}/",
        {"name": "erp2", "url": URL, "events": ["alert.fired"], "enabled": "on"},
    )
    assert resp.status_code == 302
    hook.refresh_from_db()
    assert hook.name == "erp2" and hook.secret == SECRET  # blank keeps the secret
    assert c.post(f"/hooks/{hook.uuid}/delete/").status_code == 302
    assert not Webhook.objects.exists()


def test_administrators_are_offered_private_addresses(admin_user):
    assert "allow_private" in login(admin_user).get("/hooks/new/").content.decode()


def _finish(owner):
    op = start_operation(kind="test.steps", task="tests.support.steps", owner=owner)
    from core.operations import execute_operation

    execute_operation(op.pk)
    return op


def test_events_reach_those_the_policy_routes_them_to(
    admin_user, reseller, customer, mallory, django_capture_on_commit_callbacks
):
    hooks = {
        who.email: services.do_create_webhook(actor=who, data=DATA)
        for who in (admin_user, reseller, customer, mallory)
    }
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch()
    with django_capture_on_commit_callbacks(execute=True):
        op = _finish(customer)
    dispatch.dispatch()
    event = Event.objects.get(type="operation.succeeded")
    assert event.object_id == str(op.uuid) and event.reseller_id == reseller.pk
    heard = set(
        Delivery.objects.filter(event=event).values_list("webhook__owner__email", flat=True)
    )
    assert heard == {admin_user.email, reseller.email, customer.email}
    assert hooks[mallory.email].deliveries.count() == 0


def test_each_event_is_made_once_and_old_news_is_not_replayed(
    customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _finish(customer)  # before any webhook exists
    dispatch.dispatch()
    services.do_create_webhook(actor=customer, data=DATA)
    assert dispatch.dispatch() == 0 and not Event.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        _finish(customer)
    assert dispatch.dispatch() == 1
    assert dispatch.dispatch() == 0  # the rescan reads it again and makes nothing
    assert Event.objects.count() == 1 and Delivery.objects.count() == 1


def test_website_created_and_suspended_come_from_the_audit_chain(
    admin_user, customer, django_capture_on_commit_callbacks
):
    from servers.models import Server
    from websites.models import Website

    services.do_create_webhook(
        actor=customer, data={**DATA, "events": ["website.created", "website.suspended"]}
    )
    dispatch.dispatch()
    server = Server.objects.create(name="s", address="93.184.216.34", owner=admin_user)
    site = Website.objects.create(domain="shop.example.com", server=server, owner=customer)
    audit.record("website.create", site, actor=customer)
    from websites.services import do_suspend_website

    do_suspend_website(site, actor=admin_user, reason="unpaid")
    dispatch.dispatch()
    events = list(Event.objects.order_by("id").values_list("type", flat=True))
    assert events == ["website.created", "website.suspended"]
    suspended = Event.objects.get(type="website.suspended").data["website"]
    assert suspended["domain"] == "shop.example.com" and suspended["suspended"] is True
    assert Delivery.objects.count() == 2


def test_a_revoked_token_stops_its_webhooks(customer, django_capture_on_commit_callbacks):
    token, _auth = bearer(customer)
    hook = services.do_create_webhook(actor=customer, data=DATA, token=token)
    dispatch.dispatch()
    account_services.do_revoke_token(token, actor=customer)
    with django_capture_on_commit_callbacks(execute=True):
        _finish(customer)
    dispatch.dispatch()
    assert Event.objects.filter(type="operation.succeeded").exists()
    assert hook.deliveries.count() == 0


def test_a_webhook_whose_owner_became_support_carries_nothing_out(
    customer, mallory, django_capture_on_commit_callbacks
):
    """Support hears every tenant's events (stream_scope): a customer's webhook must not
    start receiving them all when the customer is made support staff."""
    hook = services.do_create_webhook(actor=customer, data=DATA)
    dispatch.dispatch()
    pending = services.do_send_test(hook, actor=customer)  # routed while still a customer
    type(customer).objects.filter(pk=customer.pk).update(role="support")
    with django_capture_on_commit_callbacks(execute=True):
        _finish(mallory)  # another tenant's operation
    dispatch.dispatch()
    assert Event.objects.filter(type="operation.succeeded").exists()
    assert hook.deliveries.exclude(pk=pending.pk).count() == 0
    done = services.deliver(Delivery.objects.get(pk=pending.pk))
    assert done.state == "failed" and done.attempts == 1
    assert "role is now Support" in done.last_error and "may not hold webhooks" in done.last_error
    # Shown as stopped, with the reason, on its pages and in the API.
    staff = login(make_user("admin2@example.com", "admin"))
    body = staff.get(f"/api/v1/webhooks/{hook.uuid}/").json()
    assert body["active"] is False and "Support" in body["stopped_because"]
    assert "webhook-stopped" in staff.get(f"/hooks/{hook.uuid}/").content.decode()
    assert "webhook-stopped" in staff.get("/hooks/").content.decode()


def test_an_expired_token_fails_its_pending_deliveries_with_the_reason(customer):
    from datetime import timedelta

    from django.utils import timezone

    token, _auth = bearer(customer)
    hook = services.do_create_webhook(actor=customer, data=DATA, token=token)
    pending = services.do_send_test(hook, actor=customer)
    assert login(customer).get(f"/api/v1/webhooks/{hook.uuid}/").json()["active"] is True
    type(token).objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(1))
    done = services.deliver(Delivery.objects.get(pk=pending.pk))
    assert done.state == "failed" and "token it was made with is expired" in done.last_error


@pytest.mark.parametrize(
    "task, kind",
    [("tests.support.steps", "certificate.issued"), ("tests.support.boom", "certificate.failing")],
)
def test_certificate_operations_become_certificate_events(
    task, kind, admin_user, customer, django_capture_on_commit_callbacks
):
    from core.operations import execute_operation
    from servers.models import Server
    from websites.certificates.models import Certificate
    from websites.models import Website

    services.do_create_webhook(
        actor=customer, data={**DATA, "events": ["certificate.issued", "certificate.failing"]}
    )
    dispatch.dispatch()
    server = Server.objects.create(name="s", address="93.184.216.34", owner=admin_user)
    site = Website.objects.create(domain="tls.example.com", server=server, owner=customer)
    cert = Certificate.objects.create(website=site, domains=site.domain)
    with django_capture_on_commit_callbacks(execute=True):
        op = start_operation(kind="certificate.issue", task=task, owner=customer, target=cert)
        execute_operation(op.pk)
    dispatch.dispatch()
    event = Event.objects.get(type__startswith="certificate.")
    assert event.type == kind and event.object_id == str(cert.uuid)
    assert event.data["certificate"]["domains"] == ["tls.example.com"]
    assert event.data["operation"] == str(op.uuid)
    assert Delivery.objects.filter(event=event, webhook__owner=customer).count() == 1


def test_nothing_is_sent_for_a_deactivated_owner_or_a_disabled_webhook(customer):
    hook = services.do_create_webhook(actor=customer, data=DATA)
    pending = services.do_send_test(hook, actor=customer)
    type(customer).objects.filter(pk=customer.pk).update(is_active=False)
    done = services.deliver(Delivery.objects.select_related("webhook__owner").get(pk=pending.pk))
    assert done.state == "failed" and "deactivated" in done.last_error and done.attempts == 1
    type(customer).objects.filter(pk=customer.pk).update(is_active=True)
    Webhook.objects.filter(pk=hook.pk).update(enabled=False)
    again = services.deliver(
        Delivery.objects.get(pk=services.do_send_test(hook, actor=customer).pk)
    )
    assert again.state == "failed" and again.last_error == "Not sent: Switched off."


def test_an_allowance_is_for_an_ip_address_not_a_name(admin_user, customer, monkeypatch):
    """An administrator's allow_private approves an address; a name could be repointed at
    127.0.0.1 or 169.254.169.254 after the approval."""
    from django.core.exceptions import ValidationError

    from monitoring import notify

    hook = services.do_create_webhook(actor=customer, data=DATA)
    with pytest.raises(ValidationError) as refused:
        services.do_update_webhook(hook, actor=admin_user, data={"allow_private": True})
    assert "IP address" in refused.value.message_dict["url"][0]
    hook.refresh_from_db()
    assert not hook.allow_private
    services.do_update_webhook(
        hook, actor=admin_user, data={"allow_private": True, "url": "http://10.0.0.7/in"}
    )
    hook.refresh_from_db()
    assert hook.allow_private
    assert notify.check_destination(hook.url, customer, allow_private=True) == ["10.0.0.7"]
    # A row allowed before this rule, whose name now resolves to the metadata address: the
    # allowance does not hold for a name, so the address is checked and refused.
    import socket

    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 443))],
    )
    with pytest.raises(notify.NotifyError, match="not a public address"):
        notify.check_destination(URL, customer, allow_private=True)


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::1",
        "10.1.2.3",
        # IANA special-purpose blocks that Python 3.11's is_global calls global:
        "64:ff9b:1::a00:1",  # NAT64 local-use prefix (RFC 8215)
        "100::1",  # discard-only (RFC 6666)
        "100:0:0:1::1",  # dummy prefix (RFC 9780)
        "2001:db8::1",  # documentation
        "3fff::1",  # documentation (RFC 9637)
        "5f00::1",  # SRv6 SIDs (RFC 9602)
        "fec0::1",  # site-local (deprecated)
        "ff02::1",  # multicast
        "64:ff9b::e000:1",  # NAT64 of 224.0.0.1 (multicast)
        "192.88.99.1",  # 6to4 relay anycast (deprecated)
        "233.252.0.1",  # multicast documentation
    ],
)
def test_ipv6_forms_of_private_ipv4_are_refused(address, customer):
    """Monitoring's channels and webhooks share check_destination."""
    from monitoring import notify

    assert not notify.is_public_address(address)
    with pytest.raises(notify.NotifyError, match="not a public address"):
        notify.check_destination(
            f"http://[{address}]/" if ":" in address else f"http://{address}/", customer
        )


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_and_their_ipv6_forms_pass(address):
    from monitoring import notify

    assert notify.is_public_address(address)


def test_support_cannot_add_or_change_webhooks(support, customer):
    from core.policy import ADD, CHANGE, DELETE, may

    assert not may(support, ADD, Webhook)
    c = login(support)
    resp = c.post("/api/v1/webhooks/", DATA, content_type="application/json")
    assert resp.status_code == 403 and not Webhook.objects.exists()
    assert c.post("/hooks/new/", {**DATA, "events": DATA["events"]}).status_code in (403, 404)
    assert not Webhook.objects.exists()
    # One made before this rule stays read-only to its support owner.
    hook = services.do_create_webhook(actor=customer, data=DATA)
    Webhook.objects.filter(pk=hook.pk).update(owner=support)
    hook.refresh_from_db()
    assert may(support, "view", hook)
    assert not may(support, CHANGE, hook) and not may(support, DELETE, hook)
    url = f"/api/v1/webhooks/{hook.uuid}/"
    resp = c.patch(url, {"url": "https://hooks.example.com/x"}, content_type="application/json")
    assert resp.status_code in (403, 404)
    hook.refresh_from_db()
    assert hook.url == URL


CREDENTIALED = "https://erp:hunter2@hooks.example.com/in?token=abc123&tenant=7"
REDACTED_URL = "https://***@hooks.example.com/in?token=***&tenant=***"


def test_credentials_in_a_url_stay_out_of_the_audit_chain(customer):
    """The chain is append-only: a password or token written into it stays forever."""
    hook = services.do_create_webhook(actor=customer, data={**DATA, "url": CREDENTIALED})
    services.do_update_webhook(
        hook, actor=customer, data={"url": CREDENTIALED.replace("abc123", "rotated9")}
    )
    hook.refresh_from_db()
    assert hook.url == CREDENTIALED.replace("abc123", "rotated9")  # stored and sent whole
    services.do_delete_webhook(hook, actor=customer)
    entries = AuditEntry.objects.filter(object_id=str(hook.uuid)).order_by("id")
    assert [e.action for e in entries] == ["webhook.create", "webhook.update", "webhook.delete"]
    for entry in entries:
        text = str(entry.changes)
        assert "hunter2" not in text and "abc123" not in text and "rotated9" not in text
        assert "erp:" not in text and REDACTED_URL in text


def test_a_url_is_shown_whole_to_its_owner_only(customer, reseller, admin_user, support):
    hook = services.do_create_webhook(actor=customer, data={**DATA, "url": CREDENTIALED})
    api = f"/api/v1/webhooks/{hook.uuid}/"
    assert login(customer).get(api).json()["url"] == CREDENTIALED
    for other in (reseller, admin_user, support):
        c = login(other)
        assert c.get(api).json()["url"] == REDACTED_URL
        listed = c.get("/api/v1/webhooks/").content.decode() + c.get("/hooks/").content.decode()
        assert "hunter2" not in listed and "abc123" not in listed
        # Nor can a search read the credentials out a character at a time.
        assert c.get("/api/v1/webhooks/?search=hunter2").json()["results"] == []
    page = login(reseller).get(f"/hooks/{hook.uuid}/").content.decode()
    assert "hunter2" not in page and "abc123" not in page
    admin_page = login(admin_user).get(f"/admin/hooks/webhook/{hook.pk}/change/")
    assert admin_page.status_code == 200 and "hunter2" not in admin_page.content.decode()
    # Sent back as shown (the reseller's form, an administrator's PATCH), the URL stays.
    resp = login(reseller).post(
        f"/hooks/{hook.uuid}/",
        {"name": "renamed", "url": REDACTED_URL, "events": DATA["events"], "enabled": "on"},
    )
    assert resp.status_code == 302, resp.content
    resp = login(admin_user).patch(
        api, {"url": REDACTED_URL, "enabled": False}, content_type="application/json"
    )
    assert resp.status_code == 200, resp.content
    hook.refresh_from_db()
    assert hook.name == "renamed" and not hook.enabled and hook.url == CREDENTIALED


def test_deleting_a_token_audits_each_of_its_webhooks(customer):
    token, _auth = bearer(customer)
    hooks = [
        services.do_create_webhook(actor=customer, data={**DATA, "name": f"h{i}"}, token=token)
        for i in range(2)
    ]
    account_services.do_delete_token(token, actor=customer)
    assert not Webhook.objects.exists()
    for hook in hooks:
        entry = AuditEntry.objects.get(action="webhook.delete", object_id=str(hook.uuid))
        assert entry.actor_id == customer.pk
    assert AuditEntry.objects.filter(action="token.delete", object_id=str(token.uuid)).exists()
    # Deleted any other way (the ORM, a cascade), the webhooks are still audited.
    other, _auth = bearer(customer)
    hook = services.do_create_webhook(actor=customer, data=DATA, token=other)
    other.delete()
    assert AuditEntry.objects.filter(action="webhook.delete", object_id=str(hook.uuid)).exists()


def _docs_receiver():
    """The example receiver in docs/api.md, as written there."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = text[text.index("## Webhooks") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace["receive"]


def test_the_documented_receiver_drops_replays_by_the_signed_id(customer):
    """Only the timestamp and the body are signed: a replay under a new X-Panel-Delivery is
    caught by the body's id, an old one by the timestamp."""
    import json
    import time

    from monitoring import notify

    receive = _docs_receiver()
    hook = services.do_create_webhook(actor=customer, data=DATA)
    event = services.do_send_test(hook, actor=customer).event
    body = json.dumps(event.body(), separators=(",", ":"), sort_keys=True).encode()

    def signed(at: int, delivery: str) -> dict:
        return {
            "X-Panel-Timestamp": str(at),
            "X-Panel-Signature": notify.sign(SECRET, str(at), body),
            "X-Panel-Delivery": delivery,
        }

    seen: set = set()
    now = int(time.time())
    first = signed(now, "d1")
    assert receive(SECRET.encode(), first, body, seen)["id"] == str(event.uuid)
    # A retry: fresh timestamp and signature, same body.
    assert receive(SECRET.encode(), signed(now + 30, "d1"), body, seen) is None
    # The captured request replayed with another (unsigned) delivery header.
    assert receive(SECRET.encode(), {**first, "X-Panel-Delivery": "d2"}, body, seen) is None
    # Replayed later, to a receiver that has forgotten the id: the timestamp is stale.
    with pytest.raises(ValueError, match="stale"):
        receive(SECRET.encode(), signed(now - 600, "d3"), body, set())
    with pytest.raises(ValueError, match="signature"):
        receive(SECRET.encode(), first, body.replace(b"webhook.test", b"webhook.tesT"), set())


SLACK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/xoxSecretSlackToken123"
DISCORD = "https://discord.com/api/webhooks/123456789012345678/DiscordSecretToken_abc-XYZ"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SLACK, "https://hooks.slack.com/services/***"),
        (DISCORD, "https://discord.com/api/***"),
        ("https://hooks.example.com/in?SECRETTOKEN", "https://hooks.example.com/in?***"),
        (
            "https://hooks.example.com/in?a=1&SECRETTOKEN&b",
            "https://hooks.example.com/in?a=***&***&***",
        ),
        ("https://hooks.example.com/in?token=", "https://hooks.example.com/in?token=***"),
        (
            "https://u:p@hooks.example.com:8443/x/y#frag",
            "https://***@hooks.example.com:8443/x/***#***",
        ),
        ("https://[2001:db8::1]:8443/in/abc", "https://[2001:db8::1]:8443/in/***"),
        ("https://hooks.example.com/in/", "https://hooks.example.com/in/"),
        ("https://hooks.example.com", "https://hooks.example.com"),
        ("https://hooks.example.com/", "https://hooks.example.com/"),
        ("hooks.example.com/services/secret", "***"),  # no scheme: nothing to keep
        ("https://[::1/x", "***"),
        ("", ""),
    ],
)
def test_redact_url_keeps_only_the_origin_and_first_path_segment(url, shown):
    from hooks.models import redact_url

    assert redact_url(url) == shown


@given(
    first=st.text("abcdefghij", min_size=1, max_size=8),
    rest=st.lists(st.text("0123456789", min_size=6, max_size=20), min_size=1, max_size=4),
    items=st.lists(st.text("0123456789", min_size=6, max_size=20), max_size=3),
    bare=st.lists(st.text("0123456789", min_size=6, max_size=20), max_size=2),
)
def test_redact_url_shows_no_later_path_segment_nor_any_query_value(first, rest, items, bare):
    """Secrets (here: runs of digits) anywhere past the first path segment, in query values
    or as bare query items never show."""
    import re

    from hooks.models import redact_url

    query = "&".join([f"k={v}" for v in items] + bare)
    url = f"https://hooks.example.com/{first}/{'/'.join(rest)}" + (f"?{query}" if query else "")
    shown = redact_url(url)
    assert shown.startswith(f"https://hooks.example.com/{first}/***")
    assert not re.search(r"\d{6}", shown)


def test_webhook_create_writes_no_path_token_to_the_audit_chain(customer, reseller, monkeypatch):
    """The chain is append-only: a token in a Slack or Discord path written there stays."""
    import socket

    resolve = socket.getaddrinfo  # the autouse stand-in: these hosts as public, offline
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **kw: resolve(
            "hooks.example.com" if host in ("hooks.slack.com", "discord.com") else host, *a, **kw
        ),
    )
    for name, url in (("slack", SLACK), ("discord", DISCORD)):
        hook = services.do_create_webhook(actor=customer, data={**DATA, "name": name, "url": url})
        assert hook.url == url  # stored and sent whole
        entry = AuditEntry.objects.get(action="webhook.create", object_id=str(hook.uuid))
        assert entry.changes["url"] == [None, redact_url_of(url)]
        assert "SecretSlackToken" not in str(entry.changes)
        assert "DiscordSecretToken" not in str(entry.changes)
        assert "123456789012345678" not in str(entry.changes)
        # Others are shown the same, and saving it back keeps the stored URL.
        api = f"/api/v1/webhooks/{hook.uuid}/"
        assert login(reseller).get(api).json()["url"] == redact_url_of(url)
        assert login(customer).get(api).json()["url"] == url
    services.do_create_webhook(
        actor=customer, data={**DATA, "name": "bare", "url": f"{URL}?SECRETTOKEN"}
    )
    entry = AuditEntry.objects.filter(action="webhook.create").latest("id")
    assert "SECRETTOKEN" not in str(entry.changes)


def redact_url_of(url: str) -> str:
    from hooks.models import redact_url

    return redact_url(url)
