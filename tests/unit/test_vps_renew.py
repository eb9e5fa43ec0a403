"""Renewing a VPS (administrators only, docs/vps.md "Expiry"): the portal's confirmation
page and ``POST /api/v1/vps/{uuid}/renew/`` lift an expiry suspension through
``do_renew_vps``; everyone else gets 404 and nothing changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEntry
from servers.models import Server
from tests.conftest import login
from vps.models import Hypervisor, Vps, VpsPlan

pytestmark = pytest.mark.django_db
JSON = {"content_type": "application/json"}


@pytest.fixture
def expired(admin_user, customer):
    """The customer's VPS, suspended by the expiry schedule a day ago."""
    server = Server.objects.create(
        name="hv", address="198.51.100.10", transport="local", owner=admin_user
    )
    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    plan = VpsPlan.objects.create(name="Small")
    return Vps.objects.create(
        hostname="lapsed",
        owner=customer,
        plan=plan,
        hypervisor=hv,
        state=Vps.State.SUSPENDED,
        state_message="Expired: suspended until renewed.",
        expires_at=timezone.now() - timedelta(days=1),
    )


def _audited(user) -> bool:
    return AuditEntry.objects.filter(action="vps.renew", actor_id=user.pk).exists()


def test_admin_renews_a_suspended_vps_on_its_page(admin_user, expired):
    client = login(admin_user)
    detail = client.get(expired.get_absolute_url()).content.decode()
    assert f'href="/vps/{expired.uuid}/renew/"' in detail
    page = client.get(f"/vps/{expired.uuid}/renew/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Renew lapsed" in body and 'type="datetime-local"' in body and "expired" in body
    until = (timezone.now() + timedelta(days=30)).replace(second=0, microsecond=0)
    resp = client.post(
        f"/vps/{expired.uuid}/renew/", {"expires_at": until.strftime("%Y-%m-%dT%H:%M")}
    )
    assert resp.status_code == 302 and resp["Location"] == expired.get_absolute_url()
    expired.refresh_from_db()
    assert (expired.state, expired.expires_at, expired.state_message) == ("stopped", until, "")
    assert _audited(admin_user)
    # Its owner may start it again.
    assert login(expired.owner).get(f"/vps/{expired.uuid}/power/start/").status_code == 200


def test_portal_refuses_a_past_expiry_with_a_field_error(admin_user, expired):
    past = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    resp = login(admin_user).post(f"/vps/{expired.uuid}/renew/", {"expires_at": past})
    assert resp.status_code == 400
    assert list(resp.context["form"].errors) == ["expires_at"]
    expired.refresh_from_db()
    assert expired.state == "suspended" and not _audited(admin_user)


def test_admin_renews_through_the_api(admin_user, expired):
    api = login(admin_user)
    url = f"/api/v1/vps/{expired.uuid}/renew/"
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    refused = api.post(url, {"expires_at": past}, **JSON)
    assert refused.status_code == 400 and "expires_at" in refused.json()
    assert api.post(url, {}, **JSON).status_code == 400  # expires_at must be given (or null)
    until = timezone.now() + timedelta(days=365)
    answer = api.post(url, {"expires_at": until.isoformat()}, **JSON)
    assert answer.status_code == 200, answer.content
    assert answer.json()["state"] == "stopped" and answer.json()["uuid"] == str(expired.uuid)
    expired.refresh_from_db()
    assert expired.state == "stopped" and expired.expires_at == until
    # null: no expiry at all.
    assert api.post(url, {"expires_at": None}, **JSON).json()["expires_at"] is None
    assert AuditEntry.objects.filter(action="vps.renew", actor_id=admin_user.pk).count() == 2


@pytest.mark.parametrize("who", ["customer", "reseller", "support", "mallory"])
def test_everyone_else_gets_404_and_changes_nothing(request, expired, who):
    user = request.getfixturevalue(who)
    client = login(user)
    future = timezone.now() + timedelta(days=30)
    assert client.get(f"/vps/{expired.uuid}/renew/").status_code == 404
    form = {"expires_at": future.strftime("%Y-%m-%dT%H:%M")}
    assert client.post(f"/vps/{expired.uuid}/renew/", form).status_code == 404
    api = client.post(
        f"/api/v1/vps/{expired.uuid}/renew/", {"expires_at": future.isoformat()}, **JSON
    )
    assert api.status_code == 404
    expired.refresh_from_db()
    assert expired.state == "suspended" and expired.expires_at < timezone.now()
    assert not AuditEntry.objects.filter(action="vps.renew").exists()


def test_the_owner_sees_no_renew_button(customer, expired):
    page = login(customer).get(expired.get_absolute_url())
    assert page.status_code == 200 and b"/renew/" not in page.content
