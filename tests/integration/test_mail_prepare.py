"""Prepare for mail over the test sshd against this machine's dpkg (Postfix, Dovecot and
OpenDKIM are installed, so nothing is installed): the Operation writes main.cf, master.cf,
dovecot.conf and opendkim.conf from the panel's templates through the apply engine, each
checked by the program before the swap, and starts the three programs (no systemd here) on
private directories and loopback ports. Then, with smtplib and imaplib: IMAP refuses a login
before STARTTLS; submission (587's stand-in) offers AUTH only after STARTTLS and relays only
for an authenticated mailbox; port 25 is no open relay; an over-quota delivery is deferred.

The programs run for the whole module; each test runs the Operation again (it converges:
the programs are reloaded, not restarted). A forwarder's foreign domain goes to an aiosmtpd
catcher: the only stand-in, for the public internet."""

from __future__ import annotations

import datetime
import imaplib
import json
import smtplib
import socket
import ssl
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from accounts.models import Role
from core.models import Operation
from mail import services
from mail.models import CONFIG_UNIT, Mailbox, MailDomain
from servers.models import Server
from tests.conftest import make_user, wait_until
from tests.integration.conftest import free_port
from tests.integration.mail_stack import FOREIGN, prepared_paths
from websites.models import Plan, Subscription

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
PASSWORD = "mailbox password 1"
DOMAIN = "prep.example.test"


class Catcher:
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
def paths(catcher):
    controller, _handler = catcher
    with prepared_paths(controller.port) as found:
        yield found


@pytest.fixture
def mail_server(ssh_server, paths, q_sync):
    ssh_server.profile = paths["profile"]
    ssh_server.save()
    yield ssh_server


@pytest.fixture
def owner(mallory):
    plan = Plan.objects.create(name="mail plan", mailboxes=10)
    Subscription.objects.create(user=mallory, plan=plan)
    return mallory


def prepare(server, actor, capture) -> Operation:
    with capture(execute=True):
        op = services.do_prepare_mail(server, actor=actor, data={})
    op.refresh_from_db()
    return op


@pytest.fixture
def prepared(mail_server, admin_user, owner, django_capture_on_commit_callbacks):
    """The server prepared for mail, with a domain and a mailbox applied."""
    op = prepare(mail_server, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "succeeded", "\n".join(line.message for line in op.lines.all())
    with django_capture_on_commit_callbacks(execute=True):
        domain = services.do_create_mail_domain(
            actor=owner, data={"domain": DOMAIN, "server": mail_server}
        )
        services.do_create_mailbox(
            actor=owner, data={"domain": domain, "local_part": "info", "password": PASSWORD}
        )
    assert Mailbox.objects.get().status == "active", Mailbox.objects.get().status_message
    return domain


class Imap(imaplib.IMAP4):
    """From 127.0.0.3: Dovecot counts a client on its own address as secure and would allow
    a login in clear."""

    def _create_socket(self, timeout):
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=("127.0.0.3", 0)
        )


def smtp_to(paths, port: str) -> smtplib.SMTP:
    """From 127.0.0.3: outside mynetworks (127.0.0.1, where Dovecot's auto-replies come
    from), like any client on the internet."""
    return smtplib.SMTP(
        "127.0.0.1", paths["ports"][port], timeout=30, source_address=("127.0.0.3", 0)
    )


def tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def imap_subjects(paths, user: str, password: str) -> list[str]:
    with Imap("127.0.0.1", paths["ports"]["imap"], timeout=30) as imap:
        imap.starttls(tls())
        imap.login(user, password)
        imap.select("INBOX")
        _typ, data = imap.search(None, "ALL")
        out = []
        for num in data[0].split():
            _typ, parts = imap.fetch(num, "(BODY[HEADER.FIELDS (SUBJECT)])")
            out.append(parts[0][1].decode().split(":", 1)[1].strip())
        return out


def message(to: str, subject: str, sender: str = "someone@sender.example", size: int = 0):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(f"Body of {subject}.\n" + ("x" * 76 + "\n") * (size // 77))
    return msg


def test_prepare_writes_the_configuration_and_starts_the_programs(
    paths, mail_server, prepared, admin_user, owner, catcher, django_capture_on_commit_callbacks
):
    server = Server.objects.get(pk=mail_server.pk)
    assert server.components["mail"]["packages"]["postfix"]
    main_cf = (paths["conf"] / "main.cf").read_text()
    assert "Managed by the hosting panel" in main_cf
    assert f"smtpd_tls_cert_file = {paths['cert']}" in main_cf
    for path in (paths["profile"]["dovecot_conf"], paths["profile"]["opendkim_conf"]):
        assert "Managed by the hosting panel" in Path(path).read_text()
    assert subprocess.run(["postfix", "-c", str(paths["conf"]), "status"]).returncode == 0
    with smtp_to(paths, "smtp") as smtp:
        smtp.send_message(message(f"info@{DOMAIN}", "after prepare"))
    wait_until(lambda: "after prepare" in imap_subjects(paths, f"info@{DOMAIN}", PASSWORD), 20)
    # Catch-all: an address without a mailbox delivers to it; the mailboxes keep theirs.
    with (
        pytest.raises(smtplib.SMTPRecipientsRefused),
        smtp_to(paths, "smtp") as smtp,
    ):
        smtp.send_message(message(f"nobody@{DOMAIN}", "before the catch-all"))
    with django_capture_on_commit_callbacks(execute=True):
        services.do_update_mail_domain(prepared, actor=owner, data={"catch_all": f"info@{DOMAIN}"})
    with smtp_to(paths, "smtp") as smtp:
        smtp.send_message(message(f"nobody@{DOMAIN}", "caught by the catch-all"))
    wait_until(
        lambda: "caught by the catch-all" in imap_subjects(paths, f"info@{DOMAIN}", PASSWORD), 20
    )
    # An auto-responder: Dovecot's sieve answers the sender (once), through Postfix.
    _controller, handler = catcher
    with django_capture_on_commit_callbacks(execute=True):
        services.do_update_mailbox(
            Mailbox.objects.get(),
            actor=owner,
            data={
                "autoreply": True,
                "autoreply_subject": 'On "leave"',
                "autoreply_body": "Back soon.\n.\nBye",
            },
        )
    with smtp_to(paths, "smtp") as smtp:
        smtp.send_message(message(f"info@{DOMAIN}", "are you there", f"asker@{FOREIGN}"))
    wait_until(lambda: any(f"asker@{FOREIGN}" in m.rcpt_tos for m in handler.messages), 30)
    reply = next(m for m in handler.messages if f"asker@{FOREIGN}" in m.rcpt_tos).content
    assert b'Subject: On "leave"' in reply and b"Back soon." in reply
    assert "are you there" in imap_subjects(paths, f"info@{DOMAIN}", PASSWORD)
    # Again: nothing to install, the programs reloaded (not started twice), same files.
    op = prepare(mail_server, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "succeeded"
    assert (paths["conf"] / "main.cf").read_text() == main_cf


def test_logins_need_tls_and_only_port_25_takes_mail_unauthenticated(paths, prepared, catcher):
    """IMAP refuses a login before STARTTLS; submission offers AUTH only after STARTTLS and
    relays for a mailbox that logged in (DKIM-signed); port 25 offers STARTTLS, no AUTH,
    and relays nothing."""
    with Imap("127.0.0.1", paths["ports"]["imap"], timeout=30) as imap:
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(f"info@{DOMAIN}", PASSWORD)
    with Imap("127.0.0.1", paths["ports"]["imap"], timeout=30) as imap:
        imap.starttls(tls())
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(f"info@{DOMAIN}", "not the password")
    _controller, handler = catcher
    with smtp_to(paths, "submission") as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("auth")  # no AUTH in clear
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail(f"info@{DOMAIN}", [f"boss@{FOREIGN}"], b"Subject: x\r\n\r\nx\r\n")
    with smtp_to(paths, "submission") as smtp:
        smtp.starttls(context=tls())
        smtp.ehlo("client.test")
        assert smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(f"info@{DOMAIN}", "not the password")
    with smtp_to(paths, "submission") as smtp:
        smtp.starttls(context=tls())
        smtp.login(f"info@{DOMAIN}", PASSWORD)
        smtp.send_message(message(f"boss@{FOREIGN}", "sent with auth", f"info@{DOMAIN}"))
    wait_until(lambda: any(b"sent with auth" in m.content for m in handler.messages), 20)
    sent = next(m.content for m in handler.messages if b"sent with auth" in m.content)
    assert b"DKIM-Signature:" in sent and f"d={DOMAIN}".encode() in sent
    with smtp_to(paths, "smtp") as smtp:
        smtp.ehlo("client.test")
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        smtp.starttls(context=tls())
        smtp.ehlo("client.test")
        assert not smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            smtp.send_message(message("victim@far-away.example", "relay me"))
    code, text = next(iter(exc.value.recipients.values()))
    assert code == 554 and b"Relay access denied" in text


def test_delivery_over_the_quota_is_deferred_and_the_queue_is_managed(
    paths, prepared, owner, admin_user, django_capture_on_commit_callbacks
):
    box = Mailbox.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        services.do_update_mailbox(box, actor=owner, data={"quota_mb": 1})
    with smtp_to(paths, "smtp") as smtp:
        smtp.send_message(message(f"info@{DOMAIN}", "fits", size=600_000))
    wait_until(lambda: "fits" in imap_subjects(paths, f"info@{DOMAIN}", PASSWORD), 20)
    with smtp_to(paths, "smtp") as smtp:
        smtp.send_message(message(f"info@{DOMAIN}", "too big", size=600_000))

    def deferred() -> list[dict]:
        out = subprocess.run(
            ["postqueue", "-c", str(paths["conf"]), "-j"], capture_output=True, text=True
        ).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    wait_until(lambda: any(m["queue_name"] == "deferred" for m in deferred()), 20)
    reasons = " ".join(r.get("delay_reason", "") for m in deferred() for r in m["recipients"])
    assert "quota" in reasons.lower() or "full" in reasons.lower(), reasons
    assert "too big" not in imap_subjects(paths, f"info@{DOMAIN}", PASSWORD)

    # The queue as staff see it, then retried (still deferred) and deleted, as Operations;
    # the mailbox's usage read from Dovecot's quota plugin.
    from mail.models import MailServerState

    server = prepared.server
    with django_capture_on_commit_callbacks(execute=True):
        services.start_read_queue(server, actor=admin_user)
    state = MailServerState.objects.get(server=server)
    assert state.queue_total == 1 and state.queue[0]["queue_name"] == "deferred"
    assert "full" in state.queue[0]["recipients"][0]["reason"].lower()
    qid = state.queue[0]["queue_id"]
    with django_capture_on_commit_callbacks(execute=True):
        op = services.do_retry_queued(server, actor=admin_user, data={"queue_ids": [qid]})
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    with django_capture_on_commit_callbacks(execute=True):
        op = services.do_delete_queued(server, actor=admin_user, data={"queue_ids": [qid]})
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    assert deferred() == [] and MailServerState.objects.get(server=server).queue_total == 0
    with django_capture_on_commit_callbacks(execute=True):
        services.start_read_usage(server, actor=admin_user)
    box.refresh_from_db()
    assert box.used_kb is not None and 550 < box.used_kb < 1024, box.used_kb
    assert box.used_percent is not None and box.used_percent > 50


def test_a_configuration_dovecot_refuses_keeps_the_live_files(
    paths, mail_server, prepared, admin_user, django_capture_on_commit_callbacks
):
    """A certificate path that does not exist: doveconf refuses the staged dovecot.conf, the
    live files stay, the Operation fails with Dovecot's words; fixed, it converges."""
    conf = Path(paths["profile"]["dovecot_conf"])
    before = conf.read_text()
    good = dict(mail_server.profile)
    mail_server.profile = {**good, "mail_tls_cert": str(paths["base"] / "missing.crt")}
    mail_server.save()
    op = prepare(mail_server, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "failed"
    why = op.error_detail or op.error
    assert "missing.crt" in why and CONFIG_UNIT in why
    assert conf.read_text() == before
    assert "missing.crt" not in (paths["conf"] / "main.cf").read_text()
    mail_server.profile = good
    mail_server.save()
    assert prepare(mail_server, admin_user, django_capture_on_commit_callbacks).state == (
        "succeeded"
    )
    assert imap_subjects(paths, f"info@{DOMAIN}", PASSWORD) is not None


def test_a_failed_first_apply_leaves_the_server_not_prepared(
    paths, mail_server, admin_user, django_capture_on_commit_callbacks
):
    """mail:config refused (a certificate that does not exist): the Operation fails and the
    server is not recorded as prepared (usage reads would fail on it); fixed, it is."""
    from mail.config import prepared

    good = dict(mail_server.profile)
    mail_server.profile = {**good, "mail_tls_cert": str(paths["base"] / "missing.crt")}
    mail_server.save()
    op = prepare(mail_server, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "failed"
    server = Server.objects.get(pk=mail_server.pk)
    assert not prepared(server) and "mail" not in (server.components or {})
    mail_server.profile = good
    mail_server.save()
    assert prepare(mail_server, admin_user, django_capture_on_commit_callbacks).state == (
        "succeeded"
    )
    server = Server.objects.get(pk=mail_server.pk)
    assert prepared(server) and server.components["mail"]["prepared_at"]
    assert "mail_preparing" not in server.components


def test_sender_rules_and_the_sending_limit(
    paths, prepared, owner, admin_user, catcher, django_capture_on_commit_callbacks
):
    """Postfix asks the panel's policy service: a denied sender domain is refused at RCPT
    unless the address is allowed; a mailbox over its hourly limit gets its mail held, and
    once the queue is read an alert source reports it."""
    _controller, handler = catcher
    with django_capture_on_commit_callbacks(execute=True):
        services.do_update_mail_domain(
            prepared,
            actor=owner,
            data={"spam_deny": "spammer.example", "spam_allow": "friend@spammer.example"},
        )
        # A mailbox of its own: the policy's counters outlive a test's rows.
        box = services.do_create_mailbox(
            actor=owner, data={"domain": prepared, "local_part": "sender", "password": PASSWORD}
        )
        services.do_update_mailbox(box, actor=admin_user, data={"send_limit_per_hour": 1})
    with smtp_to(paths, "smtp") as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            smtp.send_message(message(f"info@{DOMAIN}", "spam", "bulk@spammer.example"))
        code, text = next(iter(exc.value.recipients.values()))
        assert code == 554 and b"refused by prep.example.test's rules" in text
        smtp.send_message(message(f"info@{DOMAIN}", "from a friend", "friend@spammer.example"))
    wait_until(lambda: "from a friend" in imap_subjects(paths, f"info@{DOMAIN}", PASSWORD), 20)

    with smtp_to(paths, "submission") as smtp:
        smtp.starttls(context=tls())
        smtp.login(f"sender@{DOMAIN}", PASSWORD)
        smtp.send_message(message(f"boss@{FOREIGN}", "first within the limit", f"sender@{DOMAIN}"))
        smtp.send_message(message(f"boss@{FOREIGN}", "second over the limit", f"sender@{DOMAIN}"))
    wait_until(lambda: any(b"first within" in m.content for m in handler.messages), 20)

    def held() -> list[dict]:
        out = subprocess.run(
            ["postqueue", "-c", str(paths["conf"]), "-j"], capture_output=True, text=True
        ).stdout
        return [m for m in map(json.loads, filter(None, out.splitlines()))
                if m["queue_name"] == "hold"]  # fmt: skip

    wait_until(lambda: len(held()) == 1, 20)
    assert not any(b"second over" in m.content for m in handler.messages)

    from mail.queue import held_source
    from monitoring.models import AlertRule

    with django_capture_on_commit_callbacks(execute=True):
        services.start_read_usage(prepared.server, actor=admin_user)
    rule = AlertRule(owner=admin_user, kind="mail_held", scope=AlertRule.Scope.ALL)
    findings = list(held_source(rule, None))
    assert len(findings) == 1 and f"sender@{DOMAIN}" in findings[0].message
    assert findings[0].server_id == prepared.server_id


def test_submission_sends_only_as_the_mailboxes_own_addresses(
    paths, prepared, owner, catcher, django_capture_on_commit_callbacks
):
    """Another customer's domain on the same server: a mailbox logged in on submission may
    not use its addresses (nor an unknown one) as MAIL FROM, so OpenDKIM never signs them
    with that domain's key; its own address and an alias of its own domain still go out,
    DKIM-signed."""
    customer = make_user("victim@example.com", Role.CUSTOMER)
    Subscription.objects.create(user=customer, plan=Plan.objects.create(name="p2", mailboxes=1))
    other = "victim.example.test"
    with django_capture_on_commit_callbacks(execute=True):
        theirs = services.do_create_mail_domain(
            actor=customer, data={"domain": other, "server": prepared.server}
        )
        services.do_create_mailbox(
            actor=customer, data={"domain": theirs, "local_part": "ceo", "password": PASSWORD}
        )
        services.do_create_alias(
            actor=owner,
            data={"domain": prepared, "local_part": "sales", "destinations": f"info@{DOMAIN}"},
        )
    _controller, handler = catcher
    with smtp_to(paths, "submission") as smtp:
        smtp.starttls(context=tls())
        smtp.login(f"info@{DOMAIN}", PASSWORD)
        for sender in (f"ceo@{other}", f"anyone@{other}", f"nobody@{FOREIGN}"):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
                smtp.send_message(message(f"boss@{FOREIGN}", f"as {sender}", sender))
            code, text = next(iter(exc.value.recipients.values()))
            assert code == 553 and b"not owned by user" in text, (sender, code, text)
        # Its own envelope, another domain's header From (what OpenDKIM signs by): refused.
        for header_from in (
            f"ceo@{other}",
            f'"info@{DOMAIN}" <ceo@{other}>',
            f"info@{DOMAIN}, ceo@{other}",
            f"CEO@{other.upper()}",
        ):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                smtp.send_message(
                    message(f"boss@{FOREIGN}", "header from", header_from),
                    from_addr=f"info@{DOMAIN}",
                )
            assert refused.value.smtp_code == 550, refused.value
            assert (
                f"5.7.1 header From ceo@{other} is not an address info@{DOMAIN} may send as"
                in refused.value.smtp_error.decode()
            ), refused.value
        # The list OpenDKIM checks against cannot be read: try again later (451).
        logins = Path(paths["profile"]["opendkim_dir"]) / "SenderLogins"
        logins.rename(logins.with_suffix(".away"))
        try:
            with pytest.raises(smtplib.SMTPDataError) as later:
                smtp.send_message(message(f"boss@{FOREIGN}", "no list", f"info@{DOMAIN}"))
            assert later.value.smtp_code == 451, later.value
        finally:
            logins.with_suffix(".away").rename(logins)
        smtp.send_message(message(f"boss@{FOREIGN}", "as the alias", f"sales@{DOMAIN}"))
        smtp.send_message(
            message(f"boss@{FOREIGN}", "alias header", f"Sales <sales@{DOMAIN}>"),
            from_addr=f"info@{DOMAIN}",
        )
        smtp.send_message(message(f"boss@{FOREIGN}", "as itself", f"info@{DOMAIN}"))
    for subject in (b"as itself", b"as the alias", b"alias header"):
        wait_until(lambda s=subject: any(s in m.content for m in handler.messages), 20)
    assert not any(other.encode() in m.content for m in handler.messages)
    assert not any(b"header from" in m.content for m in handler.messages)
    for subject in (b"as itself", b"alias header"):
        sent = next(m.content for m in handler.messages if subject in m.content)
        assert b"DKIM-Signature:" in sent and f"d={DOMAIN}".encode() in sent, sent


def sendmail_as(paths, user: str, text: str, *args: str) -> subprocess.CompletedProcess:
    """The sendmail binary run by ``user`` against the private instance: its set-gid
    postdrop trusts only /etc/postfix, so that is the private configuration here (a mount
    namespace of this command alone)."""
    script = 'mount --bind "$1" /etc/postfix && shift && exec runuser -u "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sendmail-as", str(paths["conf"]), user,
         "--", "sendmail", "-t", *args],
        input=text, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


SITE_USER = "panelsite1"  # a site's Linux user (PHP's mail(), cron run sendmail as it)


def ensure_site_user() -> None:
    import pwd

    try:
        pwd.getpwnam(SITE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", SITE_USER], check=True)  # fmt: skip


def test_sendmail_takes_each_login_s_own_senders_and_signs_only_matching_mail(
    paths, prepared, owner, catcher, django_capture_on_commit_callbacks
):
    """Local submission carries no SASL login: Postfix holds each UNIX login to the envelope
    senders the panel gives it (local_login_sender_maps): a site's Linux user its own sites'
    domains and itself, root and vmail anything, anyone else nothing. OpenDKIM signs a
    site user's mail only when the header From domain is the envelope's and refuses it
    otherwise; root's and vmail's (auto-replies) are signed by the header From as before."""
    from mail.models import MAPS_UNIT
    from servers.services import start_apply
    from websites.models import SystemAccount, Website

    ensure_site_user()
    customer = make_user("victim@example.com", Role.CUSTOMER)
    Subscription.objects.create(user=customer, plan=Plan.objects.create(name="p2", mailboxes=1))
    other = "victim.example.test"
    server = prepared.server
    SystemAccount.objects.create(server=server, user=owner, name=SITE_USER)
    Website.objects.create(domain=DOMAIN, aliases=f"www.{DOMAIN}", server=server, owner=owner)
    with django_capture_on_commit_callbacks(execute=True):
        services.do_create_mail_domain(actor=customer, data={"domain": other, "server": server})
        start_apply(server, actor=owner, units={MAPS_UNIT})
    local = (Path(paths["profile"]["mail_map_dir"]) / "local_senders").read_text()
    assert f"{SITE_USER} {SITE_USER} {SITE_USER}@mx.panel.test @{DOMAIN} @www.{DOMAIN}" in local, (
        local
    )
    _controller, handler = catcher

    def mail(subject: str, header_from: str) -> str:
        return f"From: {header_from}\nTo: boss@{FOREIGN}\nSubject: {subject}\n\nx\n"

    def sent(subject: str) -> bytes:
        wait_until(lambda: any(subject.encode() in m.content for m in handler.messages), 30)
        return next(m.content for m in handler.messages if subject.encode() in m.content)

    # The site user: its own domain, envelope and header From alike: delivered, signed.
    res = sendmail_as(paths, SITE_USER, mail("site own", f"web@{DOMAIN}"), "-f", f"web@{DOMAIN}")
    assert res.returncode == 0, res
    # Another customer's domain (or a foreign one) as envelope sender: refused by postdrop.
    for sender in (f"ceo@{other}", f"x@{FOREIGN}"):
        res = sendmail_as(paths, SITE_USER, mail(f"site as {sender}", sender), "-f", sender)
        assert res.returncode != 0 and "not authorized to use sender" in res.stderr, (sender, res)
    # Its own envelope, another domain's header From: refused by OpenDKIM's hooks (550),
    # bounced to the envelope sender, never signed nor sent; so is a header From of its own
    # site behind the default envelope (itself at the host name: PHP's mail() without -f).
    res = sendmail_as(paths, SITE_USER, mail("site header", f"ceo@{other}"), "-f", f"web@{DOMAIN}")
    assert res.returncode == 0, res
    res = sendmail_as(paths, SITE_USER, mail("site default", f"web@{DOMAIN}"))
    assert res.returncode == 0, res
    log = Path(paths["profile"]["postfix_log_file"])
    refusals = (
        f"5.7.1 header From ceo@{other} is not an address web@{DOMAIN} may send as",
        f"5.7.1 header From web@{DOMAIN} is not an address {SITE_USER}@mx.panel.test may",
    )
    wait_until(lambda: all(r in log.read_text() for r in refusals), 30)
    # Anyone the panel knows nothing of: refused.
    res = sendmail_as(paths, "nobody", mail("by nobody", f"info@{DOMAIN}"))
    assert res.returncode != 0 and "not authorized to use sender" in res.stderr, res
    # root and vmail (auto-replies): any sender, signed by the header From.
    for user in ("root", "vmail"):
        res = sendmail_as(paths, user, mail(f"by {user}", f"info@{DOMAIN}"))
        assert res.returncode == 0, res
    for subject in ("site own", "by root", "by vmail"):
        message_ = sent(subject)
        assert b"DKIM-Signature:" in message_ and f"d={DOMAIN}".encode() in message_, message_
    for subject in (b"site as", b"by nobody", b"site header", b"site default"):
        assert not any(subject in m.content for m in handler.messages), subject


def test_php_mail_as_the_pool_sends_it_is_delivered_and_signed(
    paths, prepared, owner, catcher, django_capture_on_commit_callbacks
):
    """A PHP site's mail() runs the pool's sendmail_path as the site's Linux user: exactly
    that command with a WordPress-style From of the site's domain leaves DKIM-signed."""
    from mail.models import MAPS_UNIT
    from servers.services import start_apply
    from websites.apply import sendmail_path
    from websites.models import SystemAccount, Website

    ensure_site_user()
    server = prepared.server
    SystemAccount.objects.create(server=server, user=owner, name=SITE_USER)
    site = Website.objects.create(domain=DOMAIN, server=server, owner=owner)
    with django_capture_on_commit_callbacks(execute=True):
        start_apply(server, actor=owner, units={MAPS_UNIT})
    argv = sendmail_path(site).split()
    assert argv[:2] == ["/usr/sbin/sendmail", "-t"], argv
    text = f"From: WordPress <wordpress@{DOMAIN}>\nTo: boss@{FOREIGN}\nSubject: wp mail\n\nx\n"
    res = sendmail_as(paths, SITE_USER, text, *argv[2:])
    assert res.returncode == 0, res
    _controller, handler = catcher
    wait_until(lambda: any(b"wp mail" in m.content for m in handler.messages), 30)
    sent = next(m.content for m in handler.messages if b"wp mail" in m.content)
    assert b"DKIM-Signature:" in sent and f"d={DOMAIN}".encode() in sent, sent


def test_port_25_from_loopback_is_never_signed(paths, prepared, catcher):
    """Any local user can talk to port 25 on 127.0.0.1 (inside mynetworks, so it relays):
    mail there with a hosted domain's header From leaves unsigned. OpenDKIM has no internal
    host; only submission (logged in) and the sendmail binary are signed, by the hooks."""
    _controller, handler = catcher
    with smtplib.SMTP("127.0.0.1", paths["ports"]["smtp"], timeout=30) as smtp:
        smtp.send_message(message(f"boss@{FOREIGN}", "loopback forged", f"info@{DOMAIN}"))
    wait_until(lambda: any(b"loopback forged" in m.content for m in handler.messages), 20)
    sent = next(m.content for m in handler.messages if b"loopback forged" in m.content)
    assert b"DKIM-Signature:" not in sent, sent


def test_auto_responder_window_and_a_script_sievec_refuses(
    paths, prepared, owner, catcher, monkeypatch, django_capture_on_commit_callbacks
):
    """The auto-responder answers only between its first and last day (sieve's currentdate,
    by the server's clock: this machine's); a script Pigeonhole refuses (sievec, in the
    staged check) fails the domain's unit with sievec's words and the live one stays."""
    _controller, handler = catcher
    today = datetime.date.today()
    day = datetime.timedelta(days=1)
    sieve = Path(paths["profile"]["dovecot_sieve_dir"]) / f"info@{DOMAIN}.sieve"

    def update(**data):
        with django_capture_on_commit_callbacks(execute=True):
            services.do_update_mailbox(Mailbox.objects.get(), actor=owner, data=data)

    def ask(sender: str) -> None:
        with smtp_to(paths, "smtp") as smtp:
            smtp.send_message(message(f"info@{DOMAIN}", f"asked by {sender}", sender))
        wait_until(
            lambda: f"asked by {sender}" in imap_subjects(paths, f"info@{DOMAIN}", PASSWORD), 20
        )

    update(autoreply=True, autoreply_subject="Window", autoreply_body="Away.",
           autoreply_start=today + day)  # fmt: skip
    assert Mailbox.objects.get().status == "active", Mailbox.objects.get().status_message
    ask(f"early@{FOREIGN}")
    update(autoreply_start=today - 5 * day, autoreply_end=(today - day).isoformat())
    ask(f"late@{FOREIGN}")
    update(autoreply_start=today - day, autoreply_end=today + day)
    ask(f"inside@{FOREIGN}")
    wait_until(lambda: any(f"inside@{FOREIGN}" in m.rcpt_tos for m in handler.messages), 30)
    replied = {r for m in handler.messages for r in m.rcpt_tos}
    assert f"early@{FOREIGN}" not in replied and f"late@{FOREIGN}" not in replied
    # A script sievec refuses never goes live.
    live = sieve.read_text()
    assert "currentdate" in live
    with monkeypatch.context() as patched:  # (monkeypatch.undo would end q_sync too)
        patched.setattr(
            "mail.apply.render_vacation", lambda box: 'require ["vacation"];\nvacation text:\nx\n'
        )
        update(autoreply_subject="Broken")
    domain = MailDomain.objects.get(domain=DOMAIN)
    assert domain.status == "failed" and "sievec" in domain.status_message, domain.status_message
    assert f"info@{DOMAIN}.sieve" in domain.status_message
    assert sieve.read_text() == live
    update(autoreply_subject="Fixed")
    domain.refresh_from_db()
    assert domain.status == "active", domain.status_message
    assert '"Fixed"' in sieve.read_text()
