"""Mail through the apply engine against a private Postfix (``postfix -c DIR``: its own
queue and data directories, SMTP and submission on free loopback ports), Dovecot (``dovecot
-c conf``: IMAP on a free port, LMTP on a socket Postfix delivers to) and OpenDKIM, their
configuration rendered by mail.config as "Prepare for mail" writes it
(tests/integration/mail_stack.py), started and stopped by pid/command there; the panel
reaches them over the test sshd.

A forwarder's foreign domain is routed to a local SMTP catcher (aiosmtpd): the only stand-in,
for the public internet."""

from __future__ import annotations

import imaplib
import pwd
import shutil
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from mail import services
from mail.apply import MailFiles
from mail.models import MAPS_UNIT, Mailbox, MailDomain
from servers import connection
from servers.engine import registry
from servers.engine.engine import Engine
from tests.conftest import wait_until
from tests.integration.conftest import free_port
from tests.integration.mail_stack import FOREIGN
from tests.integration.mail_stack import mail_stack as start_mail_stack
from websites.models import Plan, Subscription

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
PASSWORD = "mailbox password 1"


class Catcher:
    """The foreign mail server a forwarder sends to."""

    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def catcher():
    handler = Catcher()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture(scope="module")
def module_stack(catcher):
    """One stack for the module (starting one takes seconds); each test starts from what
    the first apply would find (``mail_stack``)."""
    controller, _handler = catcher
    with start_mail_stack(controller.port) as stack:
        yield stack


@pytest.fixture
def mail_stack(module_stack, catcher):
    """The module's stack as new: no maildirs, users files, keys or caught mail of an
    earlier test (the maps and tables are rewritten by every test's first apply, whose
    files the engine does not know yet)."""
    yield module_stack
    _controller, handler = catcher
    handler.messages.clear()
    profile = module_stack["profile"]
    for key in ("vmail_base", "dovecot_users_dir", "dovecot_sieve_dir", "opendkim_key_dir"):
        for entry in Path(profile[key]).iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


@pytest.fixture
def mail_server(ssh_server, mail_stack):
    ssh_server.profile = mail_stack["profile"]
    ssh_server.save()
    with registry.only_providers(MailFiles()):
        yield ssh_server


@pytest.fixture
def owner(mallory):
    plan = Plan.objects.create(name="mail plan", mailboxes=10)
    Subscription.objects.create(user=mallory, plan=plan)
    return mallory


def apply(server, units=None):
    """As the apply Operation does (servers.tasks.run_apply): the engine, then the report."""
    server.refresh_from_db()
    result = Engine(server, connection.open_transport(server)).apply(units)
    registry.report(server, result.ok_units, result.failed_units)
    return result


@pytest.fixture
def domain(mail_server, owner):
    d = services.do_create_mail_domain(
        actor=owner, data={"domain": "shop.example.test", "server": mail_server}
    )
    services.do_create_mailbox(
        actor=owner, data={"domain": d, "local_part": "info", "password": PASSWORD}
    )
    return d


def send(stack, to: str, subject: str, sender: str = "someone@sender.example") -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(f"Body of {subject}.")
    with smtplib.SMTP("127.0.0.1", stack["smtp_port"], timeout=30) as smtp:
        smtp.send_message(msg)


def submit(stack, to: str, subject: str, login: str) -> None:
    """As a mail client: submission, STARTTLS (the stack's self-signed certificate), AUTH."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = login, to, subject
    msg.set_content(f"Body of {subject}.")
    with smtplib.SMTP("127.0.0.1", stack["submission_port"], timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.login(login, PASSWORD)
        smtp.send_message(msg)


def imap_subjects(stack, user: str, password: str) -> list[str]:
    with imaplib.IMAP4("127.0.0.1", stack["imap_port"], timeout=30) as imap:
        imap.login(user, password)
        imap.select("INBOX")
        _typ, data = imap.search(None, "ALL")
        subjects = []
        for num in data[0].split():
            _typ, parts = imap.fetch(num, "(BODY[HEADER.FIELDS (SUBJECT)])")
            subjects.append(parts[0][1].decode().split(":", 1)[1].strip())
        return subjects


def wait_for_subject(stack, user, password, subject, timeout=20.0):
    wait_until(lambda: subject in imap_subjects(stack, user, password), timeout)


def test_a_message_to_a_new_mailbox_is_read_over_imap(mail_stack, mail_server, domain):
    result = apply(mail_server)
    assert set(result.reloaded) == {"postfix", "dovecot", "opendkim"}, result
    domain.refresh_from_db()
    assert domain.status == "active", domain.status_message
    assert Mailbox.objects.get().status == "active"
    users_file = mail_stack["users"] / "shop.example.test"
    assert "{SHA512-CRYPT}$6$" in users_file.read_text()
    assert PASSWORD not in users_file.read_text()
    assert oct(users_file.stat().st_mode & 0o777) == "0o640"
    send(mail_stack, "info@shop.example.test", "hello over smtp")
    wait_for_subject(mail_stack, "info@shop.example.test", PASSWORD, "hello over smtp")
    maildir = mail_stack["vmail"] / "shop.example.test" / "info" / "Maildir"
    assert maildir.stat().st_uid == pwd.getpwnam("vmail").pw_uid
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(mail_stack, "info@shop.example.test", "not the password")


def test_alias_and_forwarder_deliver(mail_stack, mail_server, domain, owner, catcher):
    _controller, handler = catcher
    services.do_create_alias(
        actor=owner,
        data={"domain": domain, "local_part": "sales", "destinations": "info@shop.example.test"},
    )
    services.do_create_alias(
        actor=owner,
        data={"domain": domain, "local_part": "fwd", "destinations": [f"boss@{FOREIGN}"]},
    )
    apply(mail_server)
    send(mail_stack, "sales@shop.example.test", "to the alias")
    wait_for_subject(mail_stack, "info@shop.example.test", PASSWORD, "to the alias")
    send(mail_stack, "fwd@shop.example.test", "to the forwarder")
    wait_until(lambda: any(f"boss@{FOREIGN}" in m.rcpt_tos for m in handler.messages), 20)
    assert b"to the forwarder" in handler.messages[-1].content


def test_suspended_mailbox_refuses_login_and_mail(mail_stack, mail_server, domain, owner):
    apply(mail_server)
    box = Mailbox.objects.get()
    services.do_update_mailbox(box, actor=owner, data={"suspended": True})
    apply(mail_server, {domain.unit, MAPS_UNIT})
    box.refresh_from_db()
    assert box.status == "suspended"
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(mail_stack, "info@shop.example.test", PASSWORD)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(mail_stack, "info@shop.example.test", "while suspended")
    services.do_update_mailbox(box, actor=owner, data={"suspended": False})
    apply(mail_server, {domain.unit, MAPS_UNIT})
    assert imap_subjects(mail_stack, "info@shop.example.test", PASSWORD) == []


def test_no_open_relay(mail_stack, mail_server, domain):
    apply(mail_server)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        send(mail_stack, "victim@far-away.example", "relay me")
    code, text = next(iter(exc.value.recipients.values()))
    assert code == 554 and b"Relay access denied" in text


def test_deleted_domain_is_removed_from_both_programs(mail_stack, mail_server, domain, owner):
    apply(mail_server)
    services.do_delete_mail_domain(MailDomain.objects.get(), actor=owner)
    apply(mail_server, {domain.unit, MAPS_UNIT})
    assert not (mail_stack["users"] / "shop.example.test").exists()
    assert "shop.example.test" not in (mail_stack["conf"] / "panel" / "domains").read_text()
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(mail_stack, "info@shop.example.test", "after delete")


def test_broken_dovecot_config_keeps_live_users_and_says_why(
    mail_stack, mail_server, domain, owner
):
    """doveconf refuses the configuration: the staged users file is not swapped in, the
    domain is failed with Dovecot's words; once fixed, the next apply converges."""
    apply(mail_server)
    users_file = mail_stack["users"] / "shop.example.test"
    before = users_file.read_text()
    services.do_create_mailbox(
        actor=owner, data={"domain": domain, "local_part": "new", "password": PASSWORD}
    )
    conf = mail_stack["dovecot_conf"]
    good = conf.read_text()
    conf.write_text(good + "this_is_not_a_setting = 1\n")
    result = apply(mail_server, {domain.unit, MAPS_UNIT})
    assert domain.unit in result.failed_units
    assert "this_is_not_a_setting" in result.failed_units[domain.unit]
    assert users_file.read_text() == before
    domain.refresh_from_db()
    assert domain.status == "failed" and "this_is_not_a_setting" in domain.status_message
    conf.write_text(good)
    apply(mail_server, {domain.unit, MAPS_UNIT})
    domain.refresh_from_db()
    assert domain.status == "active" and "new@shop.example.test" in users_file.read_text()
    send(mail_stack, "new@shop.example.test", "after the fix")
    wait_for_subject(mail_stack, "new@shop.example.test", PASSWORD, "after the fix")


def test_postfix_check_failure_holds_the_maps(mail_stack, mail_server, domain, owner):
    """postfix check refuses (a main.cf Postfix cannot read): the maps stay as they were and
    every domain of the server says why."""
    apply(mail_server)
    domains_map = mail_stack["conf"] / "panel" / "domains"
    before = domains_map.read_text()
    services.do_create_mail_domain(
        actor=owner, data={"domain": "second.example.test", "server": mail_server}
    )
    main_cf = mail_stack["conf"] / "main.cf"
    good = main_cf.read_text()
    main_cf.write_text(good + "this line has no equals sign\n")
    result = apply(mail_server)
    assert MAPS_UNIT in result.failed_units
    assert domains_map.read_text() == before
    assert set(MailDomain.objects.values_list("status", flat=True)) == {"failed"}
    main_cf.write_text(good)
    apply(mail_server, {MAPS_UNIT})
    assert "second.example.test OK" in domains_map.read_text()
    assert set(MailDomain.objects.values_list("status", flat=True)) == {"active"}


def test_outgoing_mail_is_dkim_signed_with_the_published_key(
    mail_stack, mail_server, domain, owner, catcher
):
    """Mail a mailbox sends on submission (logged in) leaves signed by OpenDKIM with the
    domain's key; dkimpy verifies it against the TXT record the panel publishes for it."""
    import dkim as dkimpy

    from mail import dnsrecords

    _controller, handler = catcher
    services.do_create_alias(
        actor=owner,
        data={"domain": domain, "local_part": "fwd", "destinations": [f"boss@{FOREIGN}"]},
    )
    result = apply(mail_server)
    assert "opendkim" in result.reloaded, result
    key_file = Path(mail_server.profile["opendkim_key_dir"]) / "shop.example.test.private"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert key_file.stat().st_uid == pwd.getpwnam("opendkim").pw_uid
    submit(mail_stack, "fwd@shop.example.test", "signed", "info@shop.example.test")
    wait_until(lambda: any(b"signed" in m.content for m in handler.messages), 20)
    message = next(m.content for m in handler.messages if b"signed" in m.content)
    assert b"DKIM-Signature:" in message and b"d=shop.example.test" in message
    domain.refresh_from_db()
    published = {r.fqdn(domain.domain): r.content for r in dnsrecords.wanted(domain)}
    txt = published["panel._domainkey.shop.example.test"]
    record = "".join(part for part in txt.split('"') if part.strip())

    def dns(name, timeout=5):
        assert name == b"panel._domainkey.shop.example.test."
        return record.encode()

    assert dkimpy.verify(message, dnsfunc=dns)
    tampered = message.replace(b"Body of signed", b"Body of forged")
    assert not dkimpy.verify(tampered, dnsfunc=dns)


def test_api_create_runs_the_apply_operation(
    mail_stack, mail_server, owner, q_sync, django_capture_on_commit_callbacks
):
    """Through the API, as a customer: the mailbox's Operation applies it and reports it;
    the new mailbox then logs in over IMAP and receives mail."""
    from core.models import Operation
    from tests.conftest import login

    client = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            "/api/v1/mail-domains/",
            {"domain": "api.example.test", "server": str(mail_server.uuid)},
            content_type="application/json",
        )
    assert r.status_code == 201, r.content
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            "/api/v1/mailboxes/",
            {"domain": r.json()["uuid"], "local_part": "desk", "password": PASSWORD},
            content_type="application/json",
        )
    assert r.status_code == 201, r.content
    ops = Operation.objects.filter(kind="server.apply")
    assert ops.exists() and set(ops.values_list("state", flat=True)) == {"succeeded"}
    assert Mailbox.objects.get(local_part="desk").status == "active"
    assert MailDomain.objects.get(domain="api.example.test").status == "active"
    send(mail_stack, "desk@api.example.test", "via the api")
    wait_for_subject(mail_stack, "desk@api.example.test", PASSWORD, "via the api")
