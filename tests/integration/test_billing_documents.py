"""Invoice documents: the PDF WeasyPrint renders (its text read back with pypdf) and the
email that carries it through a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import io
import socket
from decimal import Decimal

import pytest
from aiosmtpd.controller import Controller
from pypdf import PdfReader

from billing import documents, services, tasks
from billing.models import BillingProfile, Invoice, TaxRate

pytestmark = pytest.mark.django_db


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def smtp():
    box = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


@pytest.fixture
def invoice(admin_user, customer):
    TaxRate.objects.create(country="AT", rate=Decimal("20.00"), name="USt")
    BillingProfile.objects.create(
        user=customer, country="AT", legal_name="Kunde GmbH", invoice_email="ap@kunde.test"
    )
    draft = Invoice.objects.create(
        customer=customer,
        issuer=customer.reseller,
        currency="EUR",
        tax_rate=Decimal("20.00"),
        tax_name="USt",
        tax_country="AT",
        bill_to=services.bill_to(customer, customer.billing_profile),
        bill_from={"name": "Resell Ltd", "address": "1 Main St", "country": "DE"},
    )
    draft.lines.create(description="Hosting plan Gold", amount=Decimal("12.50"), position=0)
    draft.lines.create(
        description="VPS web1 (M)", quantity=Decimal("100"), unit="h",
        unit_price=Decimal("0.1"), amount=Decimal("10.00"), position=1,
    )  # fmt: skip
    return services.do_issue_invoice(draft, actor=admin_user, send=False)


def test_pdf_has_number_lines_and_totals(invoice):
    text = pdf_text(documents.render_pdf(invoice))
    assert "Invoice INV-000001" in text
    assert "Hosting plan Gold" in text and "VPS web1 (M)" in text
    assert "Kunde GmbH" in text and "Resell Ltd" in text
    assert "22.50 EUR" in text  # subtotal
    assert "4.50 EUR" in text  # 20 % USt
    assert "27.00 EUR" in text  # total


def test_issued_invoice_is_emailed_with_its_pdf(invoice, smtp, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    smtp.messages.clear()
    assert tasks.send_invoices([invoice.pk]) == "1 of 1 sent"
    (envelope,) = smtp.messages
    assert envelope.rcpt_tos == ["ap@kunde.test"]
    message = email.message_from_bytes(envelope.content)
    assert message["Subject"] == "Invoice INV-000001"
    (attachment,) = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    assert attachment.get_filename() == "INV-000001.pdf"
    assert "27.00 EUR" in pdf_text(attachment.get_payload(decode=True))
    invoice.refresh_from_db()
    assert invoice.emailed_at is not None


def test_a_refusing_mail_server_leaves_it_unsent(invoice, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    assert tasks.send_invoices([invoice.pk]) == "0 of 1 sent"
    invoice.refresh_from_db()
    assert invoice.emailed_at is None


def test_drafts_are_not_sent(customer, smtp, settings):
    draft = Invoice.objects.create(customer=customer, currency="EUR")
    assert not documents.send_invoice(draft)
