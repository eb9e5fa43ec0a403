"""An invoice as a document: HTML (billing/documents/invoice.html), PDF (WeasyPrint, from
that same HTML) and the email that carries it to the customer."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import timezone

from billing.models import Invoice

log = logging.getLogger(__name__)


def invoice_context(invoice: Invoice) -> dict:
    return {
        "invoice": invoice,
        "lines": list(invoice.lines.all()),
        "payments": list(invoice.payments.filter(state="succeeded")),
        "is_credit": invoice.kind == Invoice.Kind.CREDIT_NOTE,
    }


def render_html(invoice: Invoice) -> str:
    return render_to_string("billing/documents/invoice.html", invoice_context(invoice))


def render_pdf(invoice: Invoice) -> bytes:
    """A PDF of the invoice. WeasyPrint reads no URL: the document is self-contained
    (inline CSS, no images), so nothing outside the panel is fetched."""
    from weasyprint import HTML

    def no_fetch(url, *args, **kwargs):
        raise ValueError(f"invoice documents fetch nothing ({url})")

    return HTML(string=render_html(invoice), url_fetcher=no_fetch).write_pdf()


def filename(invoice: Invoice) -> str:
    return f"{invoice.number or 'draft'}.pdf"


def send_invoice(invoice: Invoice) -> bool:
    """Email an issued invoice with its PDF to the customer's invoice address; records
    ``emailed_at``. False (logged) when it is not issued or the mail server refuses."""
    if invoice.state == Invoice.State.DRAFT:
        return False
    what = "Credit note" if invoice.kind == Invoice.Kind.CREDIT_NOTE else "Invoice"
    to = invoice.bill_to.get("email") or invoice.customer.email
    body = render_to_string("billing/documents/invoice_email.txt", invoice_context(invoice))
    message = EmailMessage(
        subject=f"{what} {invoice.number}",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
    )
    message.attach(filename(invoice), render_pdf(invoice), "application/pdf")
    try:
        message.send()
    except OSError as exc:  # smtplib's errors are OSErrors: retried on the next send
        log.warning("invoice %s not sent to %s: %s", invoice.number, to, exc)
        return False
    Invoice.objects.filter(pk=invoice.pk).update(emailed_at=timezone.now())
    return True
