"""Sharing one zone with a colleague: per-object grants the policy honours, given and taken
back by the owner (or the owner's reseller, or an administrator), audited."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core import sharing
from core.models import AuditEntry
from core.policy import CHANGE, DELETE, VIEW, restrict
from dns import services
from dns.models import Record, Zone
from tests.conftest import login, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def zone(customer):
    return services.do_create_zone(actor=customer, data={"name": "team.example"})


@pytest.fixture
def colleague(reseller):
    return make_user("colleague@example.com", "customer", reseller=reseller)


def test_view_then_change_then_nothing(zone, customer, colleague):
    assert not restrict(Zone, colleague).exists()
    sharing.do_share(zone, actor=customer, data={"email": "Colleague@Example.com"})
    assert list(restrict(Zone, colleague)) == [zone]
    assert not restrict(Zone, colleague, CHANGE).exists()
    sharing.do_share(
        zone, actor=customer, data={"email": "colleague@example.com", "level": "change"}
    )
    assert list(restrict(Zone, colleague, CHANGE)) == [zone]
    assert not restrict(Zone, colleague, DELETE).exists()
    assert sharing.shares_of(zone) == [(colleague, "change")]
    sharing.do_share(zone, actor=customer, data={"email": "colleague@example.com", "level": "view"})
    assert not restrict(Zone, colleague, CHANGE).exists()  # lowered, not only raised
    sharing.do_unshare(zone, actor=customer, data={"user": colleague})
    assert not restrict(Zone, colleague, VIEW).exists() and sharing.shares_of(zone) == []
    actions = list(
        AuditEntry.objects.filter(action__startswith="sharing.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["sharing.grant", "sharing.grant", "sharing.grant", "sharing.revoke"]


def test_only_the_owner_side_shares_and_only_with_colleagues(
    zone, customer, colleague, mallory, reseller
):
    with pytest.raises(ValidationError, match="provider"):  # another provider's customer
        sharing.do_share(zone, actor=customer, data={"email": mallory.email})
    with pytest.raises(ValidationError, match="provider"):  # the owner's own reseller is staff here
        sharing.do_share(zone, actor=customer, data={"email": reseller.email})
    with pytest.raises(ValidationError, match="provider"):
        sharing.do_share(zone, actor=customer, data={"email": customer.email})
    with pytest.raises(ValidationError):
        sharing.do_share(zone, actor=customer, data={"email": colleague.email, "level": "delete"})
    sharing.do_share(zone, actor=customer, data={"email": colleague.email, "level": "change"})
    with pytest.raises(ValidationError, match="may not"):  # a grantee cannot pass it on
        sharing.do_share(zone, actor=colleague, data={"email": colleague.email})
    with pytest.raises(ValidationError, match="may not"):
        sharing.do_share(zone, actor=mallory, data={"email": colleague.email})
    sharing.do_unshare(zone, actor=reseller, data={"user": colleague})  # the owner's reseller may


def test_a_colleague_works_in_the_portal_and_api(zone, customer, colleague, mallory):
    owner = login(customer)
    page = owner.get(zone.get_absolute_url()).content.decode()
    assert 'data-testid="sharing"' in page
    resp = owner.post(
        f"/sharing/dns.zone/{zone.uuid}/", {"email": colleague.email, "level": "change"}
    )
    assert resp.status_code == 302
    client = login(colleague)
    assert "team.example" in client.get("/dns/").content.decode()
    editor = client.get(zone.get_absolute_url())
    assert editor.status_code == 200 and 'data-testid="sharing"' not in editor.content.decode()
    added = client.post(
        f"/api/v1/zones/{zone.uuid}/records/",
        {"name": "www", "type": "A", "content": "10.0.0.1"},
        "application/json",
    )
    assert added.status_code == 201, added.content
    assert [
        r["name"] for r in client.get(f"/api/v1/zones/{zone.uuid}/records/").json()["results"]
    ] == ["www"]
    assert client.delete(f"/api/v1/zones/{zone.uuid}/").status_code == 404  # not deleted
    assert (
        client.post(f"/sharing/dns.zone/{zone.uuid}/", {"email": colleague.email}).status_code
        == 404
    )
    # Outsiders: 404 for the sharing routes too; unknown models as well.
    other = login(mallory)
    assert (
        other.post(f"/sharing/dns.zone/{zone.uuid}/", {"email": colleague.email}).status_code == 404
    )
    assert (
        owner.post(f"/sharing/servers.server/{zone.uuid}/", {"email": colleague.email}).status_code
        == 404
    )
    # Taken back: gone from the list and the API.
    assert owner.post(f"/sharing/dns.zone/{zone.uuid}/{colleague.pk}/remove/").status_code == 302
    assert client.get(zone.get_absolute_url()).status_code == 404
    assert client.get(f"/api/v1/zones/{zone.uuid}/records/").status_code == 404
    assert Record.objects.filter(zone=zone).count() == 1


def test_a_shared_channel_is_the_teams(customer, colleague, mallory, monkeypatch):
    """A channel shared with a colleague: the colleague's rules may notify it (its secret
    stays unseen); nobody else's may."""
    from monitoring import services as mon
    from monitoring.alerts import Finding, evaluate_alerts, register_source, sources
    from monitoring.models import Delivery

    channel = mon.do_create_channel(
        actor=customer,
        data={
            "name": "team hook",
            "kind": "webhook",
            "target": "https://hooks.example.com/x",
            "secret": "s3cret-value-123",
        },
    )
    with pytest.raises(ValidationError, match="channels"):
        mon.do_create_rule(
            actor=colleague, data={"name": "c", "kind": "check_failing", "channels": [channel]}
        )
    sharing.do_share(channel, actor=customer, data={"email": colleague.email})
    monkeypatch.setattr("monitoring.alerts._sources", dict(sources()))
    register_source("team_test", lambda r, now: [Finding("x:1", "thing", "broken")], label="t")
    rule = mon.do_create_rule(
        actor=colleague, data={"name": "ours", "kind": "team_test", "channels": [channel]}
    )
    fired = evaluate_alerts().fired
    assert [a.rule for a in fired] == [rule]
    assert Delivery.objects.filter(channel=channel, alert=fired[0]).count() == 1
    with pytest.raises(ValidationError, match="channels"):
        mon.do_create_rule(
            actor=mallory, data={"name": "m", "kind": "check_failing", "channels": [channel]}
        )
    # The colleague's form offers it; its page shows the sharing only to the owner side.
    page = login(colleague).get("/monitoring/channels/").content.decode()
    assert "team hook" in page and "shared by customer@example.com" in page
    owner_page = login(customer).get(channel.get_absolute_url()).content.decode()
    assert 'data-testid="sharing"' in owner_page and "colleague@example.com" in owner_page
    assert "s3cret-value-123" not in owner_page
