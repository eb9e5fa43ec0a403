# ruff: noqa: F811 - the fixtures of test_mail.py are requested by name
"""Dunning against the real mail stack (Postfix, Dovecot over the test sshd, as in
test_mail.py): the customer's mailbox refuses IMAP logins once dunning suspends it, and
logs in again after the invoice is paid by hand and the reactivation schedule runs."""

from __future__ import annotations

import imaplib
import smtplib
from datetime import timedelta
from decimal import Decimal

import pytest

from billing import dunning, services, tasks
from billing.models import BillingSettings, Invoice
from mail import services as mail_services
from mail.models import MAPS_UNIT, Mailbox
from tests.integration.test_mail import (  # noqa: F401 - fixtures
    PASSWORD,
    apply,
    catcher,
    domain,
    imap_subjects,
    mail_server,
    mail_stack,
    module_stack,
    owner,
    send,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_dunning_refuses_mail_logins_until_paid(mail_stack, mail_server, domain, owner, admin_user):
    apply(mail_server)
    assert imap_subjects(mail_stack, "info@shop.example.test", PASSWORD) == []
    BillingSettings.objects.update_or_create(
        issuer=None, defaults={"due_days": 0, "reminder_days": "", "suspend_after_days": 5}
    )
    draft = Invoice.objects.create(customer=owner, currency="EUR")
    draft.lines.create(description="Mail", amount=Decimal("2.00"))
    services.do_issue_invoice(draft, actor=admin_user, send=False)
    draft.refresh_from_db()

    assert dunning.run(today=draft.due_date + timedelta(days=5))["suspended"] == 1
    box = Mailbox.objects.get()
    assert box.billing_hold and not box.suspended
    apply(mail_server, {domain.unit, MAPS_UNIT})  # what the started apply Operation runs
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(mail_stack, "info@shop.example.test", PASSWORD)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(mail_stack, "info@shop.example.test", "while unpaid")
    # The owner clearing ``suspended`` does not lift the hold.
    mail_services.do_update_mailbox(box, actor=owner, data={"suspended": True})
    mail_services.do_update_mailbox(box, actor=owner, data={"suspended": False})
    apply(mail_server, {domain.unit, MAPS_UNIT})
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(mail_stack, "info@shop.example.test", PASSWORD)

    services.do_record_manual_payment(draft, actor=admin_user, data={"amount": "2.00"})
    assert tasks.reactivate_paid() == "1 reactivated"
    apply(mail_server, {domain.unit, MAPS_UNIT})
    assert imap_subjects(mail_stack, "info@shop.example.test", PASSWORD) == []
