"""The mail programs' configuration without the programs: what the templates say (no open
relay, AUTH only on submission after STARTTLS, the panel's certificate), profile values that
would change the files' meaning refused, only prepared servers get the unit, and "Prepare
for mail" reachable (API and portal) only by those who may apply to the server. The real
programs are in tests/integration/test_mail_prepare.py."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from core.models import AuditEntry, Operation
from mail import config, services
from mail.apply import MailFiles
from mail.models import CONFIG_UNIT
from servers.engine import profile_for
from servers.engine.contracts import ManagedFile, UnitFailed
from servers.models import Server
from tests.conftest import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(reseller):
    return Server.objects.create(
        name="mx",
        address="192.0.2.10",
        owner=reseller,
        components={"mail": {"vmail_uid": 998, "prepared_at": "2026-01-01T00:00:00"}},
        profile={"mail_hostname": "mx.example.com"},
    )


def rendered(server) -> dict[str, str]:
    files = list(MailFiles().files(server, profile_for(server), {CONFIG_UNIT}))
    assert not [f for f in files if isinstance(f, UnitFailed)], files
    return {f.path.rsplit("/", 1)[-1]: f.content.decode() for f in files if f.unit == CONFIG_UNIT}


def test_templates_say_no_open_relay_and_auth_only_after_tls(server):
    files = rendered(server)
    main, master, dovecot = files["main.cf"], files["master.cf"], files["dovecot.conf"]
    assert "reject_unauth_destination" in main and "mynetworks = 127.0.0.0/8" in main
    assert "smtpd_sasl_auth_enable = no" in main  # port 25: no AUTH at all
    assert "smtpd_tls_auth_only = yes" in main
    assert "587 inet n - n - - smtpd\n  -o syslog_name=postfix/submission" in master
    assert "-o smtpd_tls_security_level=encrypt" in master
    assert "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject" in master
    assert "myhostname = mx.example.com" in main
    assert "ssl = required" in dovecot and "disable_plaintext_auth = yes" in dovecot
    assert "first_valid_uid = 998" in dovecot and "quota_full_tempfail = yes" in dovecot
    # No certificate of the panel for mx.example.com here: Debian's self-signed one.
    assert f"smtpd_tls_cert_file = {config.SNAKEOIL[0]}" in main
    assert f"ssl_cert = <{config.SNAKEOIL[0]}" in dovecot


def test_the_panels_certificate_of_the_mail_host_is_used_once_installed(server, reseller):
    from websites.certificates.models import Certificate
    from websites.models import Website

    site = Website.objects.create(
        owner=reseller, server=server, domain="mx.example.com", status="active"
    )
    Certificate.objects.create(website=site, domains="mx.example.com", installed=True)
    main = rendered(server)["main.cf"]
    assert "smtpd_tls_cert_file = /etc/nginx/panel-tls/mx.example.com.crt" in main
    assert "smtpd_tls_key_file = /etc/nginx/panel-tls/mx.example.com.key" in main


@pytest.mark.parametrize(
    "key,value",
    [
        ("mail_mynetworks", "0.0.0.0/0\nrelay_domains = *"),
        ("mail_mynetworks", "everyone"),
        ("mail_listen_addresses", "127.0.0.1 evil"),
        ("opendkim_socket", "inet:8891@127.0.0.1\nMode s"),
        ("vmail_user", "root\nmail_uid = 0"),
    ],
)
def test_profile_values_that_change_the_meaning_fail_the_unit(server, key, value):
    server.profile = {**server.profile, key: value}
    files = list(MailFiles().files(server, profile_for(server), {CONFIG_UNIT}))
    assert [f.unit for f in files if isinstance(f, UnitFailed)] == [CONFIG_UNIT]
    assert not any(isinstance(f, ManagedFile) and f.unit == CONFIG_UNIT for f in files)


def test_an_unprepared_server_gets_no_configuration(server):
    server.components = {}
    files = list(MailFiles().files(server, profile_for(server), None))
    assert files == []


def test_prepare_is_for_those_who_may_apply(server, reseller, customer, mallory):
    with pytest.raises(ValidationError):
        services.do_prepare_mail(server, actor=customer, data={})
    op = services.do_prepare_mail(server, actor=reseller, data={})
    assert op.kind == "mail.prepare" and op.target_id == str(server.uuid)
    assert AuditEntry.objects.filter(action="server.prepare_mail").count() == 1
    for user in (customer, mallory):
        client = login(user)
        assert client.post(f"/api/v1/mail-servers/{server.uuid}/prepare/").status_code == 404
        assert client.post(f"/mail/servers/{server.uuid}/prepare/").status_code == 404
    assert Operation.objects.filter(kind="mail.prepare").count() == 1
    r = login(reseller).post(f"/api/v1/mail-servers/{server.uuid}/prepare/")
    assert r.status_code == 202 and r.json()["kind"] == "mail.prepare"


def test_server_page_shows_the_mail_card(server, reseller):
    page = login(reseller).get(server.get_absolute_url()).content.decode()
    assert 'data-testid="server-mail"' in page and "Prepare for mail again" in page


@pytest.mark.parametrize("bad", [["ALL"], ["abc"], ["ABCDEF12; rm"], ["-d"], [], ["A" * 21], 5])
def test_queue_ids_are_validated_whole(server, reseller, bad):
    with pytest.raises(ValidationError) as exc:
        services.do_delete_queued(server, actor=reseller, data={"queue_ids": bad})
    assert "queue_ids" in exc.value.message_dict
    assert not Operation.objects.exists()


@given(st.text(max_size=30))
def test_accepted_queue_ids_are_plain(text):
    from mail.queue import clean_queue_ids

    try:
        ids = clean_queue_ids([text])
    except ValidationError:
        return
    assert ids[0].isalnum() and len(ids[0]) >= 6 and ids[0].upper() != "ALL"


def test_the_queue_is_for_those_who_may_apply(server, reseller, customer, mallory):
    from mail.models import MailServerState

    MailServerState.objects.create(
        server=server,
        queue_total=1,
        queue=[{"queue_id": "ABCDEF123", "queue_name": "deferred", "sender": "a@b.example",
                "recipients": [{"address": "c@d.example", "reason": "4.2.2 Mailbox full"}],
                "size": 10, "arrival_time": 0}],
    )  # fmt: skip
    for user in (customer, mallory):
        client = login(user)
        assert client.get(f"/mail/servers/{server.uuid}/queue/").status_code == 404
        assert client.get(f"/api/v1/mail-servers/{server.uuid}/queue/").status_code == 404
        r = client.post(
            f"/api/v1/mail-servers/{server.uuid}/delete-queued/",
            {"queue_ids": ["ABCDEF123"]},
            content_type="application/json",
        )
        assert r.status_code == 404
    client = login(reseller)
    page = client.get(f"/mail/servers/{server.uuid}/queue/").content.decode()
    assert "ABCDEF123" in page and "4.2.2 Mailbox full" in page
    assert client.get(f"/api/v1/mail-servers/{server.uuid}/queue/").json()["queue_total"] == 1
    r = client.post(
        f"/api/v1/mail-servers/{server.uuid}/retry-queued/",
        {"queue_ids": ["ABCDEF123"]},
        content_type="application/json",
    )
    assert r.status_code == 202 and r.json()["kind"] == "mail.queue_retry"
    assert AuditEntry.objects.filter(action="mail.queue_retry").exists()
    r = client.post(
        f"/mail/servers/{server.uuid}/queue/", {"action": "delete", "queue_ids": ["ALL"]}
    )
    assert r.status_code == 302 and not Operation.objects.filter(kind="mail.queue_delete").exists()


def test_scheduled_usage_reads_start_once_per_prepared_server(server, reseller):
    from mail.queue import read_all_usage

    Server.objects.create(name="web", address="192.0.2.11", owner=reseller)  # not for mail
    assert read_all_usage() == 1
    assert read_all_usage() == 0  # one is queued already
    assert Operation.objects.filter(kind="mail.usage_read").count() == 1


def test_policy_rules_render_the_lists_and_limits(server, customer):
    import json

    from mail.apply import render_policy
    from mail.models import Mailbox, MailDomain
    from websites.models import Plan, Subscription

    Subscription.objects.create(user=customer, plan=Plan.objects.create(name="p", mailboxes=5))
    d = services.do_create_mail_domain(
        actor=customer, data={"domain": "shop.example.com", "server": server}
    )
    services.do_create_mailbox(
        actor=customer, data={"domain": d, "local_part": "info", "password": "a password 123"}
    )
    services.do_update_mail_domain(
        d, actor=customer, data={"spam_deny": "Spam.Example, x@bad.example", "spam_allow": ""}
    )
    assert AuditEntry.objects.filter(action="mail_domain.update").exists()
    d.refresh_from_db()
    rules = json.loads(render_policy([d], list(Mailbox.objects.all())))
    assert rules["domains"]["shop.example.com"] == {
        "allow": [],
        "deny": ["spam.example", "x@bad.example"],
    }
    assert rules["limits"] == {"info@shop.example.com": 300}
    MailDomain.objects.filter(pk=d.pk).update(spam_deny="ok.example\nbad\nline x")  # tampered
    d.refresh_from_db()
    rules = json.loads(render_policy([d], list(Mailbox.objects.all())))
    assert rules["domains"]["shop.example.com"]["deny"] == ["ok.example"]


@pytest.mark.parametrize("bad", ["not a domain!", "a@", "@b.example", "x" * 300, ["a.example", 5]])
def test_bad_sender_rules_refused(server, customer, bad):
    from mail.models import MailDomain
    from websites.models import Plan, Subscription

    Subscription.objects.create(user=customer, plan=Plan.objects.create(name="p", mailboxes=5))
    d = services.do_create_mail_domain(
        actor=customer, data={"domain": "shop.example.com", "server": server}
    )
    with pytest.raises(ValidationError) as exc:
        services.do_update_mail_domain(d, actor=customer, data={"spam_deny": bad})
    assert "spam_deny" in exc.value.message_dict
    assert MailDomain.objects.get().spam_deny == ""


@given(st.text(max_size=40), st.text(max_size=200))
def test_autoreply_text_cannot_end_the_script_early(subject, body):
    from mail.apply import render_vacation
    from mail.models import Mailbox

    script = render_vacation(Mailbox(autoreply_subject=subject, autoreply_body=body))
    head, _, rest = script.partition(" text:\n")
    assert head.count("\n") == 2 and head.endswith('"')  # the subject stayed one string
    lines = rest.split("\n")
    assert lines[-3:] == [".", ";", ""]  # the only line that is "." ends the body
    assert "." not in lines[:-3]


def test_an_autoreply_needs_a_body(server, customer):
    from mail.models import Mailbox
    from websites.models import Plan, Subscription

    Subscription.objects.create(user=customer, plan=Plan.objects.create(name="p", mailboxes=5))
    d = services.do_create_mail_domain(
        actor=customer, data={"domain": "shop.example.com", "server": server}
    )
    box = services.do_create_mailbox(
        actor=customer, data={"domain": d, "local_part": "info", "password": "a password 123"}
    )
    with pytest.raises(ValidationError) as exc:
        services.do_update_mailbox(box, actor=customer, data={"autoreply": True})
    assert "autoreply_body" in exc.value.message_dict
    with pytest.raises(ValidationError):
        services.do_update_mailbox(
            box, actor=customer, data={"autoreply_subject": "a\nb", "autoreply_body": "x"}
        )
    services.do_update_mailbox(
        box, actor=customer, data={"autoreply": True, "autoreply_body": "Away."}
    )
    files = list(MailFiles().files(server, profile_for(server), {d.unit}))
    sieve = [f for f in files if isinstance(f, ManagedFile) and f.path.endswith(".sieve")]
    assert [f.path for f in sieve] == ["/etc/dovecot/panel-sieve/info@shop.example.com.sieve"]
    assert Mailbox.objects.get().autoreply


def test_autoreply_dates_bound_the_reply(server, customer):
    """First and last day (both included) become sieve currentdate tests; the last before
    the first, a time or anything but YYYY-MM-DD is refused; empty clears a bound."""
    import datetime

    from mail.apply import render_vacation
    from mail.models import Mailbox
    from websites.models import Plan, Subscription

    Subscription.objects.create(user=customer, plan=Plan.objects.create(name="p", mailboxes=5))
    d = services.do_create_mail_domain(
        actor=customer, data={"domain": "shop.example.com", "server": server}
    )
    box = services.do_create_mailbox(
        actor=customer, data={"domain": d, "local_part": "info", "password": "a password 123"}
    )
    for bad in (
        {"autoreply_start": "2026-12-10", "autoreply_end": "2026-12-09"},
        {"autoreply_start": "10.12.2026"},
        {"autoreply_end": "2026-02-30"},
        {"autoreply_end": '2026-12-01" {'},
        {"autoreply_start": datetime.datetime(2026, 12, 1, 10, 0)},
        {"autoreply_end": 20261201},
    ):
        with pytest.raises(ValidationError) as exc:
            services.do_update_mailbox(box, actor=customer, data={"autoreply_body": "x", **bad})
        assert set(exc.value.message_dict) & {"autoreply_start", "autoreply_end"}, bad
    box = services.do_update_mailbox(
        Mailbox.objects.get(),
        actor=customer,
        data={"autoreply": True, "autoreply_body": "Away.", "autoreply_start": "2026-12-01",
              "autoreply_end": datetime.date(2026, 12, 24)},
    )  # fmt: skip
    box = Mailbox.objects.get()
    assert (box.autoreply_start, box.autoreply_end) == (
        datetime.date(2026, 12, 1),
        datetime.date(2026, 12, 24),
    )
    script = render_vacation(box)
    assert 'require ["vacation", "date", "relational"];' in script
    assert (
        'if allof (currentdate :value "ge" "date" "2026-12-01", '
        'currentdate :value "le" "date" "2026-12-24") {\nvacation :days 1' in script
    )
    assert script.endswith("\n.\n;\n}\n")
    services.do_update_mailbox(box, actor=customer, data={"autoreply_start": None})
    script = render_vacation(Mailbox.objects.get())
    assert '"ge"' not in script and 'currentdate :value "le" "date" "2026-12-24"' in script
    services.do_update_mailbox(Mailbox.objects.get(), actor=customer, data={"autoreply_end": ""})
    assert render_vacation(Mailbox.objects.get()).startswith(
        '# Managed by the hosting panel: the mailbox\'s auto-responder.\nrequire ["vacation"];\n'
    )
