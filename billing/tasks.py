"""django-q2 entry points of billing."""

from __future__ import annotations

from billing import documents
from billing.models import Invoice


def send_invoices(ids: list[int]) -> str:
    sent = 0
    for invoice in Invoice.objects.select_related("customer").filter(pk__in=ids):
        sent += documents.send_invoice(invoice)
    return f"{sent} of {len(ids)} sent"
