"""Records published outside the panel: each record a mail domain needs (mail/dnsrecords.py)
asked of the DNS with dnspython (``PANEL_MAIL_RESOLVERS``, else the system's resolvers) and
compared with what it should say. Run as an Operation (``mail.dns_check``); the result is
kept on the domain (``dns_check``, ``dns_checked_at``) and shown on its page."""

from __future__ import annotations

import dns.exception
import dns.nameserver
import dns.resolver
from django.conf import settings
from django.utils import timezone

from core.operations import OperationContext
from mail.dnsrecords import WantedRecord, wanted
from mail.models import MailDomain

OK, DIFFERENT, MISSING, UNKNOWN = "ok", "different", "missing", "unknown"


def resolver() -> dns.resolver.Resolver:
    configured = settings.PANEL_MAIL_RESOLVERS
    if not configured:
        res = dns.resolver.Resolver()
    else:
        res = dns.resolver.Resolver(configure=False)
        servers = []
        for item in configured:
            host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
            # Each resolver keeps its own port (Resolver.port would be one for all).
            servers.append(dns.nameserver.Do53Nameserver(host, int(port) if port else 53))
        res.nameservers = servers
    res.lifetime = 4
    return res


def _text(rdata) -> str:
    return b"".join(rdata.strings).decode(errors="replace")


def _unquoted(content: str) -> str:
    """A wanted TXT content ('"a" "b"') as the joined text a resolver returns."""
    return "".join(part for i, part in enumerate(content.split('"')) if i % 2)


def _normal(rdtype: str, text: str) -> str:
    return " ".join(text.lower().split()) if rdtype in ("MX", "SRV", "CNAME") else text


def check_record(res: dns.resolver.Resolver, domain: str, record: WantedRecord) -> dict:
    name = record.fqdn(domain)
    row = {"name": name, "type": record.type, "content": record.content, "found": []}
    try:
        answer = res.resolve(name, record.type)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return {**row, "state": MISSING}
    except dns.exception.DNSException as exc:
        return {**row, "state": UNKNOWN, "problem": str(exc)[:300]}
    if record.type == "TXT":
        found = [_text(r) for r in answer]
        marker = _unquoted(record.marker + '"') if record.marker else ""
        relevant = [f for f in found if f.startswith(marker)]  # SPF, DMARC: that kind only
        same = [f for f in relevant if f == _unquoted(record.content)]
    else:
        relevant = [r.to_text() for r in answer]
        want = _normal(record.type, record.content)
        same = [f for f in relevant if _normal(record.type, f) == want]
    state = OK if same else DIFFERENT if relevant else MISSING
    return {**row, "state": state, "found": relevant[:5]}


def check(domain: MailDomain) -> list[dict]:
    """Every wanted record's state. Once the DNS fails to answer, the rest are not asked
    (each would wait as long): they are unknown too."""
    res, rows, silent = resolver(), [], ""
    for record in wanted(domain):
        if silent:
            rows.append({"name": record.fqdn(domain.domain), "type": record.type,
                         "content": record.content, "found": [], "state": UNKNOWN,
                         "problem": silent})  # fmt: skip
            continue
        row = check_record(res, domain.domain, record)
        if row["state"] == UNKNOWN:
            silent = row["problem"]
        rows.append(row)
    return rows


def check_records(ctx: OperationContext, domain_id: int) -> str:
    domain = MailDomain.objects.select_related("server").get(pk=domain_id)
    ctx.progress(20, f"Asking the DNS for the records of {domain.domain}")
    rows = check(domain)
    for row in rows:
        ctx.log(f"{row['name']} {row['type']}: {row['state']}")
    MailDomain.objects.filter(pk=domain.pk).update(dns_check=rows, dns_checked_at=timezone.now())
    good = sum(1 for r in rows if r["state"] == OK)
    return f"{good} of {len(rows)} records as they should be"
