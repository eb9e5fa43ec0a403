"""A monitoring webhook channel's URL (Slack's and Discord's carry their token in the path)
is kept whole for sending and for its owner, and redacted (``core.redaction.redact_url``)
in the audit chain and for everyone else who sees the channel: its reseller, staff, the
admin."""

from __future__ import annotations

import pytest

from core.models import AuditEntry
from monitoring import services
from monitoring.models import NotificationChannel
from tests.conftest import login

pytestmark = pytest.mark.django_db

SLACK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/xoxSecretSlackToken123"
DISCORD = "https://discord.com/api/webhooks/123456789012345678/DiscordSecretToken_abc-XYZ"
SECRETS = ("xoxSecretSlackToken123", "DiscordSecretToken", "123456789012345678", "B0BBBBBBB")
SIGNING = "channel-signing-secret-0123456789"


def channel(owner, url=SLACK) -> NotificationChannel:
    return services.do_create_channel(
        actor=owner, data={"name": "ops", "kind": "webhook", "target": url, "secret": SIGNING}
    )


def test_the_audit_chain_keeps_no_token_of_a_webhook_url(customer):
    made = channel(customer)
    services.do_update_channel(made, actor=customer, data={"target": DISCORD})
    made.refresh_from_db()
    assert made.target == DISCORD  # stored and sent whole
    entries = AuditEntry.objects.filter(object_id=str(made.uuid)).order_by("id")
    assert [e.action for e in entries] == ["monitoring.channel.create", "monitoring.channel.update"]
    update = entries[1].changes["target"]
    assert update == ["https://hooks.slack.com/services/***", "https://discord.com/api/***"]
    text = "".join(str(e.changes) for e in entries)
    assert not any(secret in text for secret in SECRETS)


def test_an_email_target_is_audited_as_it_is(customer):
    made = services.do_create_channel(
        actor=customer, data={"name": "mail", "kind": "email", "target": "ops@example.com"}
    )
    services.do_update_channel(made, actor=customer, data={"target": "noc@example.com"})
    entry = AuditEntry.objects.get(action="monitoring.channel.update")
    assert entry.changes["target"] == ["ops@example.com", "noc@example.com"]


def test_the_url_is_shown_whole_to_its_owner_only(customer, reseller, admin_user):
    made = channel(customer)
    api = f"/api/v1/channels/{made.uuid}/"
    assert login(customer).get(api).json()["target"] == SLACK
    for other in (reseller, admin_user):
        c = login(other)
        assert c.get(api).json()["target"] == "https://hooks.slack.com/services/***"
        for page in (api, "/api/v1/channels/", f"/monitoring/channels/{made.uuid}/"):
            body = c.get(page).content.decode()
            assert not any(secret in body for secret in SECRETS), page
    admin_page = login(admin_user).get(f"/admin/monitoring/notificationchannel/{made.pk}/change/")
    assert admin_page.status_code == 200
    assert not any(secret in admin_page.content.decode() for secret in SECRETS)
    owner_page = login(customer).get(f"/monitoring/channels/{made.uuid}/").content.decode()
    assert "xoxSecretSlackToken123" in owner_page


def test_saving_the_redacted_url_back_keeps_the_stored_one(customer, reseller):
    made = channel(customer)
    shown = made.redacted_target
    resp = login(reseller).patch(
        f"/api/v1/channels/{made.uuid}/",
        {"target": shown, "name": "renamed"},
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.content
    made.refresh_from_db()
    assert made.target == SLACK and made.name == "renamed"
    entry = AuditEntry.objects.get(action="monitoring.channel.update")
    assert "target" not in entry.changes
