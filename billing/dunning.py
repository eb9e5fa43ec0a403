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
Every step is audited and listed on the invoice and in the staff dunning queue, and records
what actually happened (what was suspended, what came back). One account's failure (a
service that cannot be suspended or lifted) never stops the run for the others: it is
logged, audited as ``dunning.error`` and tried again next time.

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
        try:
            rules = settings_for(invoice.issuer_id, cache)
            days = (today - invoice.due_date).days
            due_reminders = [d for d in rules.reminder_day_list if d <= days]
            if due_reminders and _remind(invoice, due_reminders[-1], days):
                counts["reminders"] += 1
            limit = rules.suspend_after_days
            if limit is not None and days >= limit:
                counts["suspended"] += suspend_account(invoice, days)
        except Exception as exc:  # one invoice's trouble must not stop the others
            _error(invoice, f"invoice {invoice.number}", exc)
    counts["reactivated"] = reactivate_held_accounts(today)
    return counts


def reactivate_held_accounts(today: date | None = None) -> int:
    """``reactivate_if_settled`` for every account dunning holds services of, each on its
    own (one failing is logged and audited; the others go on). Returns how many lifted."""
    accounts = set(
        DunningSuspension.objects.filter(lifted_at__isnull=True).values_list(
            "account_id", flat=True
        )
    )
    lifted = 0
    for account_id in sorted(accounts):
        try:
            lifted += reactivate_if_settled(account_id, today=today)
        except Exception as exc:
            _error(None, f"account {account_id}", exc, owner_id=account_id)
    return lifted


def _error(obj, what: str, exc: Exception, *, owner_id: int | None = None) -> None:
    """Log (with the traceback) and audit a failure of dunning's, then carry on."""
    log.exception("dunning: %s failed", what)
    message = f"{what}: {type(exc).__name__}: {exc}"[:200]
    try:
        audit.record("dunning.error", obj, owner_id=owner_id, changes={"error": message})
    except Exception:  # the audit itself failing (the database gone): logged above
        log.exception("dunning: the error of %s not audited", what)


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
    suspended = []
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
        except Exception as exc:
            # Not suspended (its row rolled back with it): the next run tries again.
            _error(invoice, f"suspending {service} {label} for invoice {invoice.number}", exc)
            continue
        suspended.append(f"{service} {label}")
    if suspended:
        # After the fact, with what was suspended: once a day (a second run the same day,
        # for services added since, is audited by the services' own entries).
        _step(invoice, DunningStep.Kind.SUSPEND, days, "suspended: " + ", ".join(suspended))
    return len(suspended)


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
    """Lift what dunning suspended for this account once nothing it suspended for is due.
    Each row on its own: one that cannot be lifted is logged, audited and stays held (tried
    again by the next round); the others are lifted. The invoice's "reactivated" step says
    what came back; a row whose service staff changed meanwhile (or that is gone) is
    released without being counted as reactivated. Returns how many came back."""
    if owes_overdue(account_id, today):
        return 0
    back: dict[Invoice, list[str]] = {}
    released: dict[Invoice, list[str]] = {}
    rows = DunningSuspension.objects.filter(account_id=account_id, lifted_at__isnull=True)
    for row in rows.select_related("invoice"):
        try:
            with transaction.atomic():
                if not DunningSuspension.objects.filter(pk=row.pk, lifted_at__isnull=True).update(
                    lifted_at=timezone.now()
                ):
                    continue
                did = LIFT[row.service](row)
        except Exception as exc:
            _error(row.invoice, f"lifting {row.service} {row.label}", exc, owner_id=account_id)
            continue
        (back if did else released).setdefault(row.invoice, []).append(f"{row.service} {row.label}")
    for invoice, labels in back.items():
        detail = "reactivated: " + ", ".join(labels)
        if not _step(invoice, DunningStep.Kind.REACTIVATE, 0, detail):
            # Its step is taken (an earlier round lifted part of it): audited all the same.
            audit.record("invoice.dunning.reactivate", invoice, changes={"detail": detail[:200]})
    for invoice, labels in released.items():
        audit.record(
            "invoice.dunning.release",
            invoice,
            changes={"detail": ("not reactivated (changed meanwhile): " + ", ".join(labels))[:200]},
        )
    return sum(len(labels) for labels in back.values())


# Each lift returns whether it brought the service back (False: gone, or changed by staff).


def _lift_website(row: DunningSuspension) -> bool:
    from websites.models import Website
    from websites.services import do_unsuspend_website

    site = Website.objects.filter(pk=row.object_id).first()
    # Lifted only if it is still dunning's suspension (staff may have taken it over).
    reason = SUSPENSION_REASON.format(number=row.invoice.number)
    if site is None or not site.suspended or site.suspension_reason != reason:
        return False
    do_unsuspend_website(site, actor=None)
    return True


def _lift_vps(row: DunningSuspension) -> bool:
    from vps.models import Vps
    from vps.services import lift_suspend_unpaid

    message = VPS_MESSAGE.format(number=row.invoice.number)
    vps = Vps.objects.filter(pk=row.object_id).first()
    if vps is None or vps.state != Vps.State.SUSPENDED or vps.state_message != message:
        return False  # expired or changed by staff meanwhile: not dunning's hold any more
    lift_suspend_unpaid(vps, message, start=row.label.endswith(f"(was {Vps.State.RUNNING})"))
    return vps.state != Vps.State.SUSPENDED


def _lift_mailbox(row: DunningSuspension) -> bool:
    from mail.models import Mailbox
    from mail.services import set_billing_hold

    box = Mailbox.objects.filter(pk=row.object_id, billing_hold=True).select_related("domain")
    if (box := box.first()) is None:
        return False
    return set_billing_hold(box, hold=False, reason=f"invoice {row.invoice.number} settled")


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
