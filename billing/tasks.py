"""django-q2 entry points of billing (scheduled in apps.py)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from billing import documents
from billing.models import Invoice
from billing.usage import BillingPeriod


def send_invoices(ids: list[int]) -> str:
    sent = 0
    for invoice in Invoice.objects.select_related("customer").filter(pk__in=ids):
        sent += documents.send_invoice(invoice)
    return f"{sent} of {len(ids)} sent"


def run_period(period: BillingPeriod, *, actor=None, send: bool = True) -> dict:
    """Collect, rate and issue one period (each step idempotent)."""
    from billing.rating import rate_usage
    from billing.services import issue_period
    from billing.usage import collect_usage

    collected = collect_usage(period, actor=actor)
    rated = rate_usage(period, actor=actor)
    issued = issue_period(period, actor=actor, send=send)
    return {"period": period.label, "collected": collected, "rated": rated, "issued": len(issued)}


def collect_current() -> str:
    """Every few hours: this month's usage so far (the usage page), not billed."""
    from billing.usage import collect_usage

    period = BillingPeriod.month_of(timezone.now().date())
    return f"{collect_usage(period)} records for {period.label}"


def sample_usage() -> str:
    """Daily: today's samples of disk, mailboxes, databases and extra addresses (billed as
    the period's average; a second run the same day replaces that day's)."""
    from billing.usage import sample_usage as take

    day = timezone.localdate()
    return f"{take(day)} samples for {day}"


def close_previous_period() -> str:
    """Daily: the month that ended is billed (once: issued accounts are skipped after)."""
    today = timezone.now().date()
    period = BillingPeriod.month_of(today.replace(day=1) - timedelta(days=1))
    return str(run_period(period))


def run_dunning() -> str:
    """The daily schedule: reminders, suspensions and reactivations (billing.dunning)."""
    from billing import dunning

    counts = dunning.run()
    return ", ".join(f"{n} {what}" for what, n in counts.items())


def reactivate_paid() -> str:
    """Often: lift dunning's suspensions of accounts that paid by other means than a card
    (a manual payment, a credit note, a voided invoice) without waiting for the daily run;
    first, card payments left pending are checked with Stripe (dunning's light check)."""
    from billing import dunning

    checked = dunning.check_pending_card_payments()
    lifted = dunning.reactivate_held_accounts()  # each account on its own
    ended = f"{checked} pending card payments ended, " if checked else ""
    return f"{ended}{lifted} reactivated"
