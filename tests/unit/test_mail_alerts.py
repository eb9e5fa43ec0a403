"""The mailbox usage alert (``mail_quota``) through monitoring's alert engine: fires above
the rule's percentage (90 when none) as the usage read found it, resolves once below,
and a rule only sees mailboxes its owner may see. The scheduled DNS check is declared."""

from __future__ import annotations

import pytest

from core.schedules import declared
from mail.models import Mailbox, MailDomain
from monitoring.alerts import evaluate_alerts, kind_choices
from monitoring.models import Alert, AlertRule
from servers.models import Server

pytestmark = pytest.mark.django_db
HASH = "{SHA512-CRYPT}$6$salt$" + "h" * 86


@pytest.fixture
def box(reseller, customer):
    server = Server.objects.create(name="mx", address="192.0.2.10", owner=reseller)
    domain = MailDomain.objects.create(owner=customer, server=server, domain="shop.example.com")
    return Mailbox.objects.create(domain=domain, local_part="info", password_hash=HASH,
                                  quota_mb=100, used_kb=95 * 1024)  # fmt: skip


def test_a_nearly_full_mailbox_fires_and_resolves(box, customer, mallory):
    mine = AlertRule.objects.create(owner=customer, name="full", kind="mail_quota")
    theirs = AlertRule.objects.create(owner=mallory, name="not mine", kind="mail_quota")
    low = AlertRule.objects.create(owner=customer, name="half", kind="mail_quota", threshold=96)
    evaluate_alerts()
    alert = Alert.objects.get()
    assert (alert.rule, alert.state, alert.label) == (mine, "firing", "info@shop.example.com")
    assert alert.message == "info@shop.example.com uses 95 % of its 100 MB quota (over 90 %)"
    assert alert.value == 95.0
    assert not Alert.objects.filter(rule__in=[theirs, low]).exists()
    Mailbox.objects.filter(pk=box.pk).update(used_kb=97 * 1024)
    evaluate_alerts()
    assert Alert.objects.filter(rule=low, state="firing").count() == 1
    Mailbox.objects.filter(pk=box.pk).update(used_kb=50 * 1024)
    evaluate_alerts()
    assert set(Alert.objects.values_list("state", flat=True)) == {"resolved"}
    Mailbox.objects.filter(pk=box.pk).update(used_kb=None)  # never read: nothing to say
    evaluate_alerts()
    assert not Alert.objects.filter(state="firing").exists()


def test_the_sources_and_the_schedule_are_registered():
    kinds = dict(kind_choices())
    assert "mail_quota" in kinds and "mail_dns" in kinds
    assert any(r.func == "mail.alerts.check_all" for r in declared())


def test_the_scheduled_dns_check_skips_domains_already_waiting(box):
    from mail.alerts import check_all

    assert check_all() == 1
    assert check_all() == 0  # its check is queued already
    MailDomain.objects.update(suspended=True)
    MailDomain.objects.create(owner=box.domain.owner, server=box.domain.server,
                              domain="other.example.com", suspended=True)  # fmt: skip
    assert check_all() == 0
