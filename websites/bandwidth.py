"""Bandwidth from each site's access log: nginx writes it in its "combined" format, which
holds the bytes sent; every hour the constant script ``bandwidth.sh`` reads each log from
where the last count stopped (inode and offset kept on the site) and the bytes are added to
the site's month (``SiteTraffic``). A rotated log (a new inode, or a shorter file) is
finished from ``LOG.1`` when that is the old file, then read from its start. The month's
total counts against the plan's ``bandwidth_gb``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from servers import connection
from servers.models import Server
from servers.transport import TransportError
from websites.models import SiteTraffic, SystemAccount, Website

SCRIPT = Path(__file__).with_name("bandwidth.sh").read_text()
GB = 1000**3


def this_month(today: dt.date | None = None) -> dt.date:
    return (today or timezone.localdate()).replace(day=1)


def access_log(server, account: str, domain: str) -> str:
    from websites.sysaccounts import home_of

    return f"{home_of(server, account)}/logs/{domain}.access.log"


def measure_server(t, server: Server) -> int:
    """Count every site's new bytes on ``server`` in one round trip; returns the bytes."""
    accounts = set(
        SystemAccount.objects.filter(server=server).values_list("user__account_name", flat=True)
    )
    sites = list(
        Website.objects.filter(server=server, owner__account_name__in=accounts)
        .exclude(status=Website.Status.DELETING)
        .values_list("pk", "domain", "owner__account_name", "access_log_inode", "access_log_offset")
    )
    if not sites:
        return 0
    lines = "".join(
        f"{pk} {access_log(server, account, domain)} {inode if inode is not None else '-'} "
        f"{offset}\n"
        for pk, domain, account, inode, offset in sites
    )
    res = t.run(["sh", "-c", SCRIPT, "panel-bandwidth"], stdin=lines.encode(), timeout=600)
    if not res.ok:
        raise TransportError(f"counting bandwidth failed: {res.stderr.strip()[:500]}")
    known = {pk for pk, *_ in sites}
    month = this_month()
    total = 0
    with transaction.atomic():
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) != 4 or not all(p.isdigit() for p in (parts[0], parts[2], parts[3])):
                continue
            pk, inode, size, sent = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            if pk not in known:
                continue
            Website.objects.filter(pk=pk).update(
                access_log_inode=int(inode) if inode.isdigit() else None,
                access_log_offset=size,
            )
            if sent:
                row, _ = SiteTraffic.objects.get_or_create(website_id=pk, month=month)
                SiteTraffic.objects.filter(pk=row.pk).update(bytes=F("bytes") + sent)
                total += sent
    return total


def measure_bandwidth() -> int:
    """Scheduled (django-q2, hourly): every server with system accounts. Returns bytes."""
    total = 0
    for server in Server.objects.filter(system_accounts__isnull=False).distinct():
        try:
            t = connection.open_transport(server)
            total += measure_server(t, server)
        except TransportError:
            continue  # the next run reads from the same offsets
    from websites.quota import enforce_quotas

    enforce_quotas()  # over the month's bandwidth: suspend where the plan says so
    return total


def month_gb(owners) -> int:
    """The plan counter: GB (rounded up) the owners' sites sent this month."""
    sent = (
        SiteTraffic.objects.filter(website__owner__in=owners, month=this_month()).aggregate(
            s=Sum("bytes")
        )["s"]
        or 0
    )
    return -(-sent // GB)
