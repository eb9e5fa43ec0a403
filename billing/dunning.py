"""Dunning: what happens to an invoice left unpaid after its due date.

Run daily (billing.apps: a schedule of ``billing.tasks.run_dunning``). For each issued
invoice with a balance past its due date, with the issuer's ``BillingSettings``:
- at each of ``reminder_days`` after the due date, one reminder email (a ``DunningStep``
  per day, unique: a second run the same day sends nothing);
- at ``suspend_after_days``, the customer's services are suspended through the apps' own
  services, each an Operation: websites (the suspension page), VPSes (stopped, and held
  suspended so the owner cannot start them), mailboxes (logins refused). Each one is
  recorded as a ``DunningSuspension``;
- once the customer owes nothing overdue (paid by card, by hand, credited or voided), the
  rows dunning suspended, and only those, are lifted: a site staff suspended for another
  reason stays suspended.
Every step is audited and listed on the invoice and in the staff dunning queue.

The light check (every 10 minutes, ``billing.tasks.reactivate_paid``) also asks Stripe about
card payments left pending (``check_pending_card_payments``).
"""

from __future__ import annotations

import logging
from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing.models import Invoice, Payment
from billing.payment_models import DunningStep, DunningSuspension
from billing.rating import settings_for
from core import audit

log = logging.getLogger(__name__)
SUSPENSION_REASON = "Unpaid invoice {number}"
VPS_MESSAGE = "Suspended: invoice {number} is unpaid."


def overdue(today: date):
    return Invoice.objects.filter(
        kind=Invoice.Kind.INVOICE, state=Invoice.State.ISSUED, due_date__lt=today
    ).select_related("customer")


def run(today: date | None = None) -> dict:
    """One daily pass: reminders, suspensions, reactivations. Returns counts."""
    today = today or timezone.localdate()
    counts = {"reminders": 0, "suspended": 0, "reactivated": 0}
    cache: dict = {}
    for invoice in overdue(today):
        if invoice.balance <= 0:
            continue
        rules = settings_for(invoice.issuer_id, cache)
        days = (today - invoice.due_date).days
        due_reminders = [d for d in rules.reminder_day_list if d <= days]
        if due_reminders and _remind(invoice, due_reminders[-1], days):
            counts["reminders"] += 1
        limit = rules.suspend_after_days
        if limit is not None and days >= limit:
            counts["suspended"] += suspend_account(invoice, days)
    accounts = set(
        DunningSuspension.objects.filter(lifted_at__isnull=True).values_list(
            "account_id", flat=True
        )
    )
    for account_id in accounts:
        counts["reactivated"] += reactivate_if_settled(account_id, today=today)
    return counts


def _step(invoice: Invoice, kind: str, days: int, detail: str) -> bool:
    """Record a step once (False: already taken for that day) and audit it."""
    try:
        with transaction.atomic():
            DunningStep.objects.create(
                invoice=invoice, kind=kind, days_overdue=days, detail=detail[:300]
            )
            audit.record(
                f"invoice.dunning.{kind}",
                invoice,
                changes={"days_overdue": days, "detail": detail[:200]},
            )
    except IntegrityError:
        return False
    return True


def _remind(invoice: Invoice, reminder_day: int, days: int) -> bool:
    to = invoice.bill_to.get("email") or invoice.customer.email
    if not _step(invoice, DunningStep.Kind.REMINDER, reminder_day, f"to {to}"):
        return False
    body = render_to_string(
        "billing/documents/reminder_email.txt", {"invoice": invoice, "days": days}
    )
    try:
        EmailMessage(
            subject=f"Reminder: invoice {invoice.number} is overdue",
            body=body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[to],
        ).send()
    except OSError as exc:  # the step stays recorded; the next reminder day tries again
        log.warning("reminder for %s not sent to %s: %s", invoice.number, to, exc)
    Invoice.objects.filter(pk=invoice.pk).update(
        reminders_sent=invoice.reminders_sent + 1, last_reminder_at=timezone.now()
    )
    return True


# Suspending and lifting ----------------------------------------------------------------


def suspend_account(invoice: Invoice, days: int) -> int:
    """Suspend what the customer runs that is not suspended already; returns how many.
    Run every day the invoice stays unpaid, so services created since are suspended too;
    what this invoice suspended before (lifted or not) is never taken again: a service
    staff reactivated by hand meanwhile stays running."""
    done = set(
        DunningSuspension.objects.filter(invoice=invoice).values_list("service", "object_id")
    )
    todo = [
        (service, obj, label)
        for service, obj, label in _unsuspended_services(invoice.customer_id)
        if (service, obj.pk) not in done
    ]
    if not todo:
        return 0
    first = not done and not invoice.dunning_steps.filter(kind=DunningStep.Kind.SUSPEND).exists()
    detail = "services of the account suspended" if first else "services added since suspended"
    _step(invoice, DunningStep.Kind.SUSPEND, days, detail)  # once a day: False is fine
    count = 0
    for service, obj, label in todo:
        try:
            with transaction.atomic():
                DunningSuspension.objects.create(
                    account_id=invoice.customer_id,
                    invoice=invoice,
                    service=service,
                    object_id=obj.pk,
                    label=label[:300],
                )
                SUSPEND[service](obj, invoice)
        except IntegrityError:
            continue  # held already for another invoice
        count += 1
    return count


def _unsuspended_services(account_id: int) -> list[tuple[str, object, str]]:
    from mail.models import Mailbox
    from vps.models import Vps
    from websites.models import Website

    found: list[tuple[str, object, str]] = []
    for site in Website.objects.filter(owner_id=account_id, suspended=False).exclude(
        status=Website.Status.DELETING
    ):
        found.append((DunningSuspension.Service.WEBSITE, site, site.domain))
    for vps in Vps.objects.filter(
        owner_id=account_id, state__in=(Vps.State.RUNNING, Vps.State.STOPPED, Vps.State.PAUSED)
    ):
        found.append((DunningSuspension.Service.VPS, vps, vps.hostname))
    # Held even if suspended: the owner may lift ``suspended``, never the hold.
    for box in Mailbox.objects.filter(
        domain__owner_id=account_id, billing_hold=False
    ).select_related("domain"):
        found.append((DunningSuspension.Service.MAILBOX, box, str(box)))
    return found


def _suspend_website(site, invoice: Invoice) -> None:
    from websites.services import do_suspend_website

    do_suspend_website(site, actor=None, reason=SUSPENSION_REASON.format(number=invoice.number))


def _suspend_vps(vps, invoice: Invoice) -> None:
    """Held suspended (power actions refused) and its domain stopped by an Operation, as
    for an expired VPS; it was running or not is remembered to start it again."""
    from vps.services import start_suspend_unpaid

    was = vps.state
    DunningSuspension.objects.filter(
        service=DunningSuspension.Service.VPS, object_id=vps.pk, lifted_at__isnull=True
    ).update(label=f"{vps.hostname} (was {was})")
    start_suspend_unpaid(vps, VPS_MESSAGE.format(number=invoice.number))


def _suspend_mailbox(box, invoice: Invoice) -> None:
    from mail.services import set_billing_hold

    set_billing_hold(box, hold=True, reason=SUSPENSION_REASON.format(number=invoice.number))


SUSPEND = {
    DunningSuspension.Service.WEBSITE: _suspend_website,
    DunningSuspension.Service.VPS: _suspend_vps,
    DunningSuspension.Service.MAILBOX: _suspend_mailbox,
}


def owes_overdue(account_id: int, today: date | None = None) -> bool:
    """An invoice dunning suspended for is still unpaid, or another regular invoice is past
    due with a balance. Credit notes (which stay issued) and invoices not yet due never
    hold services: a join on the suspension rows would let any of them do so."""
    held = DunningSuspension.objects.filter(
        account_id=account_id, lifted_at__isnull=True, invoice__state=Invoice.State.ISSUED
    )
    if held.exists():
        return True
    today = today or timezone.localdate()
    return any(
        invoice.balance > 0
        for invoice in overdue(today).filter(customer_id=account_id).select_related(None)
    )


def reactivate_if_settled(account_id: int, today: date | None = None) -> int:
    """Lift what dunning suspended for this account once nothing it suspended for is due."""
    if owes_overdue(account_id, today):
        return 0
    lifted = 0
    rows = DunningSuspension.objects.filter(account_id=account_id, lifted_at__isnull=True)
    for row in rows.select_related("invoice"):
        with transaction.atomic():
            if not DunningSuspension.objects.filter(pk=row.pk, lifted_at__isnull=True).update(
                lifted_at=timezone.now()
            ):
                continue
            LIFT[row.service](row)
            _step(row.invoice, DunningStep.Kind.REACTIVATE, 0, "services reactivated")
        lifted += 1
    return lifted


def _lift_website(row: DunningSuspension) -> None:
    from websites.models import Website
    from websites.services import do_unsuspend_website

    site = Website.objects.filter(pk=row.object_id).first()
    # Lifted only if it is still dunning's suspension (staff may have taken it over).
    reason = SUSPENSION_REASON.format(number=row.invoice.number)
    if site is not None and site.suspended and site.suspension_reason == reason:
        do_unsuspend_website(site, actor=None)


def _lift_vps(row: DunningSuspension) -> None:
    from vps.models import Vps
    from vps.services import lift_suspend_unpaid

    vps = Vps.objects.filter(pk=row.object_id).first()
    if vps is not None:
        lift_suspend_unpaid(
            vps,
            VPS_MESSAGE.format(number=row.invoice.number),
            start=row.label.endswith(f"(was {Vps.State.RUNNING})"),
        )


def _lift_mailbox(row: DunningSuspension) -> None:
    from mail.models import Mailbox
    from mail.services import set_billing_hold

    box = Mailbox.objects.filter(pk=row.object_id, billing_hold=True).select_related("domain")
    if (box := box.first()) is not None:
        set_billing_hold(box, hold=False, reason=f"invoice {row.invoice.number} settled")


LIFT = {
    DunningSuspension.Service.WEBSITE: _lift_website,
    DunningSuspension.Service.VPS: _lift_vps,
    DunningSuspension.Service.MAILBOX: _lift_mailbox,
}


# Card payments left pending -------------------------------------------------------------

# At most this many per round (each is one or two calls to Stripe); the rest next round.
PENDING_CHECKS_PER_ROUND = 100


def check_pending_card_payments() -> int:
    """The light check: card payments pending for longer than any request can take (the
    panel died before Stripe's answer was recorded, a 3-D Secure page left open, a charge
    still processing) are reconciled with Stripe. Found in one query; returns how many were
    settled or failed. Stripe out of reach: logged, tried again next round."""
    from billing import payments

    cutoff = timezone.now() - payments.STUCK_AFTER
    stuck = list(
        Payment.objects.filter(
            method=Payment.Method.STRIPE, state=Payment.State.PENDING, created_at__lt=cutoff
        )
        .select_related("invoice")
        .order_by("created_at")[:PENDING_CHECKS_PER_ROUND]
    )
    ended = 0
    for payment in stuck:
        try:
            outcome = payments.reconcile(payment)
        except ValidationError as exc:
            log.warning("pending card payment %s not checked: %s", payment.uuid, exc.messages)
            continue
        except Exception:  # one payment's surprise must not stop the round (nor reactivation)
            log.exception("pending card payment %s not checked", payment.uuid)
            continue
        ended += outcome.state != Payment.State.PENDING
    return ended
