"""Mail's alert sources (monitoring's alert machinery raises and resolves them) and the
scheduled DNS check behind one of them.

- ``mail_dns``: a mail domain whose last DNS check found a record it needs missing or
  different (``unknown``, a DNS that did not answer, is not a finding). The check runs
  every ``PANEL_MAIL_DNS_CHECK_EVERY_MINUTES`` for every live domain (``check_all``).
- ``mail_quota``: a mailbox using more than the rule's threshold (a percentage; 90 when
  none) of its quota, as the usage read (mail/queue.py read_usage) last found it.
A source sees only what the rule's owner may see."""

from __future__ import annotations

from django.db.models import ExpressionWrapper, F, FloatField

from core.policy import VIEW, restrict
from mail.models import Mailbox, MailDomain

BAD = ("missing", "different")
DEFAULT_QUOTA_PCT = 90.0


def dns_source(rule, now):
    from monitoring.alerts import Finding

    domains = restrict(MailDomain, rule.owner, VIEW).filter(
        suspended=False, dns_checked_at__isnull=False
    )
    for d in domains.only("uuid", "domain", "dns_check", "server_id").order_by("domain"):
        bad = [r for r in d.dns_check or [] if isinstance(r, dict) and r.get("state") in BAD]
        if not bad:
            continue
        what = ", ".join(f"{r.get('type')} {r.get('name')} {r.get('state')}" for r in bad[:5])
        yield Finding(
            subject=f"maildns:{d.uuid.hex}",
            label=d.domain,
            message=f"The DNS of {d.domain} is not as mail needs it: {what}"[:500],
            value=float(len(bad)),
            server_id=d.server_id,
        )


def quota_source(rule, now):
    from monitoring.alerts import Finding

    pct = float(rule.threshold) if rule.threshold is not None else DEFAULT_QUOTA_PCT
    share = ExpressionWrapper(F("used_kb") * 100.0 / (F("quota_mb") * 1024.0), FloatField())
    boxes = (
        restrict(Mailbox, rule.owner, VIEW)
        .filter(used_kb__isnull=False, quota_mb__gt=0)
        .annotate(share=share)
        .filter(share__gt=pct)
        .select_related("domain")
        .order_by("domain__domain", "local_part")
    )
    for box in boxes:
        yield Finding(
            subject=f"mailbox:{box.uuid.hex}",
            label=box.address,
            message=f"{box.address} uses {box.share:.0f} % of its {box.quota_mb} MB quota"
            f" (over {pct:.0f} %)",
            value=round(box.share, 1),
            server_id=box.domain.server_id,
        )


def check_all() -> int:
    """Scheduled: a DNS check Operation (mail.dns_check) for every live mail domain that has
    none waiting. Returns how many were started."""
    from core.models import Operation
    from mail import services

    waiting = set(
        Operation.objects.filter(
            kind="mail.dns_check", state__in=[Operation.State.QUEUED, Operation.State.RUNNING]
        ).values_list("target_id", flat=True)
    )
    started = 0
    for domain in MailDomain.objects.filter(suspended=False).order_by("pk").iterator():
        if str(domain.uuid) not in waiting:
            services.start_dns_check(domain, actor=None)
            started += 1
    return started
