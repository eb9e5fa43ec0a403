"""The DNS check of a mail domain whose zone is served elsewhere: a private BIND on loopback
stands in for the customer's DNS provider (PANEL_MAIL_RESOLVERS points at it). Its zone
holds the MX and the DKIM key as the panel wants them, an SPF record of its own, no DMARC
and no SRV records; the check (an Operation) says so per record, and the domain's page and
API show it."""

from __future__ import annotations

import pytest

from core.models import Operation
from mail import dkim, services
from mail.models import MailDomain
from tests.conftest import login
from tests.integration.bind import remove, start_bind
from tests.integration.conftest import need, world_readable_tmp
from websites.models import Plan, Subscription

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def domain(customer, reseller, django_capture_on_commit_callbacks):
    from servers.models import Server

    Subscription.objects.create(user=customer, plan=Plan.objects.create(name="p", mailboxes=5))
    server = Server.objects.create(
        name="mx",
        address="192.0.2.25",
        owner=reseller,
        profile={"mail_hostname": "mx.panel.test", "submission_listen": "2587"},
    )
    return services.do_create_mail_domain(
        actor=customer, data={"domain": "example.test", "server": server}
    )


@pytest.fixture
def provider_dns(domain, settings):
    """The customer's DNS provider: a zone with some of the records, as a person typed them."""
    need("named")
    bind = start_bind(world_readable_tmp("uhp-maildns-"))
    bind.stop()
    key = dkim.txt_content(domain.dkim_public_key)
    with open(bind.base / "zone.db", "a") as zone:
        zone.write(
            "@ IN MX 10 MX.Panel.Test.\n"
            '@ IN TXT "v=spf1 include:spf.provider.example -all"\n'
            '@ IN TXT "google-site-verification=abc"\n'
            f"panel._domainkey IN TXT {key}\n"
            "_imap._tcp IN SRV 0 1 143 mx.panel.test.\n"
            "autoconfig IN CNAME Panel.Provider.Test.\n"
            "autodiscover IN CNAME elsewhere.provider.test.\n"
        )
    bind.start()
    settings.PANEL_MAIL_RESOLVERS = [f"127.0.0.1:{bind.port}"]
    settings.PANEL_PUBLIC_HOST = "panel.provider.test"
    yield bind
    remove(bind)


def test_the_check_says_what_the_dns_answers_per_record(
    domain, provider_dns, customer, q_sync, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        op = services.start_dns_check(domain, actor=customer)
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    domain.refresh_from_db()
    states = {(r["name"], r["type"]): r for r in domain.dns_check}
    assert states[("example.test", "MX")]["state"] == "ok"  # case and spacing do not matter
    spf = states[("example.test", "TXT")]
    assert spf["state"] == "different"
    assert spf["found"] == ["v=spf1 include:spf.provider.example -all"]  # not the other TXT
    assert states[("_dmarc.example.test", "TXT")]["state"] == "missing"
    assert states[("panel._domainkey.example.test", "TXT")]["state"] == "ok"
    assert states[("_imap._tcp.example.test", "SRV")]["state"] == "ok"
    # The submission port is the server's own (2587): what the zone lacks.
    assert states[("_submission._tcp.example.test", "SRV")]["content"].startswith("0 1 2587 ")
    assert states[("_submission._tcp.example.test", "SRV")]["state"] == "missing"
    assert states[("autoconfig.example.test", "CNAME")]["state"] == "ok"
    auto = states[("autodiscover.example.test", "CNAME")]
    assert auto["state"] == "different" and auto["found"] == ["elsewhere.provider.test."]
    assert states[("_autodiscover._tcp.example.test", "SRV")]["content"] == (
        "0 0 443 panel.provider.test."
    )
    assert states[("_autodiscover._tcp.example.test", "SRV")]["state"] == "missing"
    assert domain.dns_checked_at is not None

    client = login(customer)
    page = client.get(domain.get_absolute_url()).content.decode()
    assert page.count('data-testid="dns-state"') == len(domain.dns_check)
    assert "As it should be" in page and "Missing" in page and "include:spf.provider" in page
    api = client.get(f"/api/v1/mail-domains/{domain.uuid}/").json()
    assert len(api["dns_check"]) == len(domain.dns_check)


def test_a_dns_that_does_not_answer_is_unknown_not_missing(
    domain, settings, customer, q_sync, django_capture_on_commit_callbacks
):
    from tests.integration.conftest import free_port

    settings.PANEL_MAIL_RESOLVERS = [f"127.0.0.1:{free_port()}"]  # nothing listens there
    with django_capture_on_commit_callbacks(execute=True):
        services.start_dns_check(domain, actor=customer)
    domain.refresh_from_db()
    assert {r["state"] for r in domain.dns_check} == {"unknown"}
    assert Operation.objects.get(kind="mail.dns_check").state == "succeeded"


def test_outsiders_cannot_start_a_check(domain, mallory):
    client = login(mallory)
    assert client.post(f"/api/v1/mail-domains/{domain.uuid}/check-dns/").status_code == 404
    assert client.post(f"/mail/{domain.uuid}/dns-check/").status_code == 404
    assert not Operation.objects.filter(kind="mail.dns_check").exists()
    assert MailDomain.objects.get().dns_check == []


def test_the_scheduled_check_raises_a_dns_alert_and_resolves_it_once_fixed(
    domain, provider_dns, customer, mallory, q_sync, django_capture_on_commit_callbacks
):
    """mail.alerts.check_all (the schedule) checks every live domain; the mail_dns rule of
    the owner fires for the wrong and missing records (an outsider's rule sees nothing);
    once the provider's zone says what the panel wants, the next check resolves it."""
    from mail.alerts import check_all
    from mail.dnsrecords import wanted
    from monitoring.alerts import evaluate_alerts
    from monitoring.models import Alert, AlertRule

    rule = AlertRule.objects.create(owner=customer, name="mail dns", kind="mail_dns")
    AlertRule.objects.create(owner=mallory, name="outsider", kind="mail_dns")
    with django_capture_on_commit_callbacks(execute=True):
        assert check_all() == 1
    evaluate_alerts()
    alert = Alert.objects.get()
    assert (alert.rule, alert.state, alert.label) == (rule, "firing", "example.test")
    assert "TXT _dmarc.example.test missing" in alert.message
    assert "TXT example.test different" in alert.message
    # The provider fixes its zone: every record as the panel wants it.
    provider_dns.stop()
    zone = provider_dns.base / "zone.db"
    base = "".join(line + "\n" for line in zone.read_text().splitlines()[:3])
    records = "".join(f"{r.fqdn(domain.domain)}. IN {r.type} {r.content}\n" for r in wanted(domain))
    zone.write_text(base + records)
    provider_dns.start()
    with django_capture_on_commit_callbacks(execute=True):
        assert check_all() == 1
    domain.refresh_from_db()
    assert {r["state"] for r in domain.dns_check} == {"ok"}, domain.dns_check
    evaluate_alerts()
    alert.refresh_from_db()
    assert alert.state == "resolved" and Alert.objects.count() == 1
    MailDomain.objects.filter(pk=domain.pk).update(suspended=True)  # not checked any more
    assert check_all() == 0
