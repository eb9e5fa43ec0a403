"""VPS expiry on libvirt's test driver, with the times given (frozen): the owner's
``vps_expiring`` rule mails them 7 days and 1 day before and at suspension; at expiry the
VPS is suspended (domain stopped, power and console refused, the inventory keeps it so);
after the grace period the normal delete Operation removes it. Every step is audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.models import AuditEntry, Operation
from monitoring import services as monitoring
from monitoring.alerts import evaluate_alerts
from monitoring.models import Alert, Delivery
from tests.integration.libvirt import image  # noqa: F401 - fixture
from tests.integration.test_monitoring_notify import smtp  # noqa: F401 - fixture
from tests.integration.test_vps_testdriver import (  # noqa: F401 - fixtures
    _close_held,
    _conn,
    _defined,
    hv,
    plan,
    run,
)
from vps import services
from vps.expiry import expire_vpses
from vps.models import Vps


@pytest.fixture
def expiring(run, customer, hv, plan, image):  # noqa: F811
    start = timezone.now()
    vps = run(
        services.do_create_vps,
        actor=customer,
        data={
            "hostname": "web1",
            "plan": plan,
            "image": image,
            "expires_at": start + timedelta(days=10),
        },
    )
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING
    return vps, start


def test_owner_is_notified_7_days_and_1_day_before(run, customer, expiring):  # noqa: F811
    vps, start = expiring
    channel = monitoring.do_create_channel(
        actor=customer, data={"name": "me", "kind": "email", "target": "me@example.com"}
    )
    monitoring.do_create_rule(
        actor=customer, data={"name": "VPS expiry", "kind": "vps_expiring", "channels": [channel]}
    )
    assert not evaluate_alerts(now=start + timedelta(days=1)).fired  # 9 days left: quiet
    fired = run(evaluate_alerts, now=start + timedelta(days=4)).fired
    assert [a.subject for a in fired] == [f"vps:{vps.uuid.hex}:7d"]
    assert "web1 expires on" in fired[0].message
    result = run(evaluate_alerts, now=start + timedelta(days=9, hours=6))
    assert [a.subject for a in result.fired] == [f"vps:{vps.uuid.hex}:1d"]
    assert [a.subject for a in result.resolved] == [f"vps:{vps.uuid.hex}:7d"]
    firing_mails = [m for m in mail.outbox if "web1 expires on" in m.body]
    assert len(firing_mails) >= 2 and all(m.to == ["me@example.com"] for m in firing_mails)
    # At expiry: one more notice saying it is suspended and when it goes.
    run(expire_vpses, now=start + timedelta(days=10, minutes=1))
    fired = run(evaluate_alerts, now=start + timedelta(days=10, minutes=2)).fired
    assert [a.subject for a in fired] == [f"vps:{vps.uuid.hex}:expired"]
    assert "is suspended" in fired[0].message
    # Others' rules never see the VPS.
    assert not Alert.objects.exclude(owner=customer).exists()


def test_expiry_notices_reach_the_owner_through_a_real_smtp_server(
    run,  # noqa: F811
    settings,
    smtp,  # noqa: F811
    customer,
    expiring,
):
    """The notice goes the way every alert goes: the owner's rule, its channel, a Delivery
    sent by the notifier, here to an SMTP server on loopback (aiosmtpd)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    smtp.messages.clear()
    vps, start = expiring
    channel = monitoring.do_create_channel(
        actor=customer, data={"name": "mail", "kind": "email", "target": "owner@example.com"}
    )
    monitoring.do_create_rule(
        actor=customer, data={"name": "VPS expiry", "kind": "vps_expiring", "channels": [channel]}
    )
    run(evaluate_alerts, now=start + timedelta(days=4))
    assert [m.rcpt_tos for m in smtp.messages] == [["owner@example.com"]]
    content = smtp.messages[0].content.decode()
    assert "[FIRING] VPS expiry" in content and "web1 expires on" in content
    assert list(Delivery.objects.values_list("state", flat=True)) == ["sent"]


def test_expiry_suspends_then_deletes_after_grace(run, settings, customer, hv, expiring):  # noqa: F811
    settings.PANEL_VPS_EXPIRY_GRACE_DAYS = 3
    vps, start = expiring
    assert (
        run(expire_vpses, now=start + timedelta(days=9))
        == "0 suspended, 0 deleted after the grace period"
    )
    assert vps.console_allowed
    run(expire_vpses, now=start + timedelta(days=10, minutes=1))
    vps.refresh_from_db()
    assert vps.state == Vps.State.SUSPENDED and not vps.console_allowed
    op = Operation.objects.filter(kind="vps.expire").get()
    assert op.state == "succeeded", op.error
    assert not _conn().lookupByName(vps.domain_name).isActive()
    with pytest.raises(ValidationError, match="expired"):
        services.do_power(vps, actor=customer, action="start")
    # The inventory sees a stopped domain but the VPS stays suspended.
    run(services.start_refresh, hv)
    vps.refresh_from_db()
    assert vps.state == Vps.State.SUSPENDED
    # A second round does not suspend it again.
    run(expire_vpses, now=start + timedelta(days=11))
    assert Operation.objects.filter(kind="vps.expire").count() == 1
    # Past the grace period: the normal delete.
    run(expire_vpses, now=start + timedelta(days=13, minutes=2))
    vps.refresh_from_db()
    assert vps.state == Vps.State.DELETED and not _defined(vps.domain_name)
    assert Operation.objects.get(kind="vps.delete").state == "succeeded"
    entries = AuditEntry.objects.filter(object_id=str(vps.uuid))
    actions = set(entries.values_list("action", flat=True))
    assert {"vps.expire", "vps.expired_delete", "vps.delete"} <= actions
    assert entries.get(action="vps.expire").actor_label == "system"


def test_renewal_lifts_the_suspension(run, admin_user, customer, expiring):  # noqa: F811
    vps, start = expiring
    run(expire_vpses, now=start + timedelta(days=10, minutes=1))
    vps.refresh_from_db()
    with pytest.raises(ValidationError, match="administrators"):
        services.do_renew_vps(vps, actor=customer, data={"expires_at": None})
    with pytest.raises(ValidationError, match="future"):
        services.do_renew_vps(vps, actor=admin_user, data={"expires_at": start})
    later = timezone.now() + timedelta(days=30)
    services.do_renew_vps(vps, actor=admin_user, data={"expires_at": later})
    vps.refresh_from_db()
    assert vps.state == Vps.State.STOPPED and vps.expires_at == later
    run(services.do_power, vps, actor=customer, action="start")
    vps.refresh_from_db()
    assert vps.state == Vps.State.RUNNING and vps.console_allowed
    assert AuditEntry.objects.filter(action="vps.renew", actor_id=admin_user.pk).exists()
