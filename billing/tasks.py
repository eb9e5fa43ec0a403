"""django-q2 entry points of billing."""

from __future__ import annotations

from billing import documents
from billing.models import Invoice


def send_invoices(ids: list[int]) -> str:
    sent = 0
    for invoice in Invoice.objects.select_related("customer").filter(pk__in=ids):
        sent += documents.send_invoice(invoice)
    return f"{sent} of {len(ids)} sent"


def run_dunning() -> str:
    """The daily schedule: reminders, suspensions and reactivations (billing.dunning)."""
    from billing import dunning

    counts = dunning.run()
    return ", ".join(f"{n} {what}" for what, n in counts.items())


def reactivate_paid() -> str:
    """Often: lift dunning's suspensions of accounts that paid by other means than a card
    (a manual payment, a credit note, a voided invoice) without waiting for the daily run."""
    from billing import dunning
    from billing.payment_models import DunningSuspension

    accounts = set(
        DunningSuspension.objects.filter(lifted_at__isnull=True).values_list(
            "account_id", flat=True
        )
    )
    lifted = sum(dunning.reactivate_if_settled(a) for a in accounts)
    return f"{lifted} reactivated"
