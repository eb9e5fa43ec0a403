"""The DNS records a mail domain needs: MX (the mail server's public host name, the
server profile's ``mail_hostname``), SPF (only that MX sends), DMARC and its DKIM key,
the RFC 6186 SRV records and, with ``PANEL_PUBLIC_HOST`` set, ``autoconfig.``/
``autodiscover.`` CNAMEs and the ``_autodiscover._tcp`` SRV pointing at the panel.
Published in the owner's zone when the panel serves it (``dns.services``); otherwise the
domain's page shows them to publish elsewhere. An existing record of the same kind is
never overwritten."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from mail.models import MailDomain
from websites.validators import DOMAIN

SPF = '"v=spf1 mx -all"'
DMARC = '"v=DMARC1; p=quarantine; adkim=s; aspf=s"'


@dataclass(frozen=True)
class WantedRecord:
    name: str  # relative to the mail domain: "" is the domain itself
    type: str
    content: str
    marker: str = ""  # a TXT record starting with this already says the same thing

    def fqdn(self, domain: str) -> str:
        return f"{self.name}.{domain}" if self.name else domain


def mail_host(domain: MailDomain) -> str:
    """The MX target: the profile's ``mail_hostname``, else the server's address when it
    is a host name; "" when neither says one."""
    from servers.engine import profile_for

    for value in (profile_for(domain.server).mail_hostname, domain.server.address):
        name = (value or "").strip().rstrip(".").lower()
        try:
            ipaddress.ip_address(name)
            continue
        except ValueError:
            pass
        if DOMAIN.fullmatch(name):
            return name
    return ""


def panel_host() -> str:
    """The panel's public host name (``PANEL_PUBLIC_HOST``), where the autoconfig and
    Autodiscover endpoints answer; "" when unset or not a strict host name."""
    from django.conf import settings

    name = (settings.PANEL_PUBLIC_HOST or "").strip().rstrip(".").lower()
    return name if DOMAIN.fullmatch(name) else ""


def wanted(domain: MailDomain) -> list[WantedRecord]:
    host = mail_host(domain)
    records = [WantedRecord("", "MX", f"10 {host}.")] if host else []
    records += [
        WantedRecord("", "TXT", SPF, marker='"v=spf1'),
        WantedRecord("_dmarc", "TXT", DMARC, marker='"v=DMARC1'),
    ]
    if domain.dkim_public_key:
        from mail import dkim

        name = f"{domain.dkim_selector}._domainkey"
        records.append(WantedRecord(name, "TXT", dkim.txt_content(domain.dkim_public_key)))
    if host:  # RFC 6186: mail clients find the submission and IMAP services themselves
        submission, imap = service_ports(domain)
        records += [
            WantedRecord("_submission._tcp", "SRV", f"0 1 {submission} {host}."),
            WantedRecord("_imap._tcp", "SRV", f"0 1 {imap} {host}."),
        ]
    panel = panel_host()
    if host and panel:  # the autoconfig endpoints answer only for domains with a mail host
        records += [
            WantedRecord("autoconfig", "CNAME", f"{panel}."),
            WantedRecord("autodiscover", "CNAME", f"{panel}."),
            WantedRecord("_autodiscover._tcp", "SRV", f"0 0 443 {panel}."),
        ]
    return records


def service_ports(domain: MailDomain) -> tuple[int, int]:
    """The submission and IMAP ports the server's configuration listens on."""
    from servers.engine import profile_for

    profile = profile_for(domain.server)
    ports = []
    for key, default in (("submission_listen", 587), ("imap_listen", 143)):
        tail = str(getattr(profile, key)).rsplit(":", 1)[-1]
        ports.append(int(tail) if tail.isdigit() and 0 < int(tail) < 65536 else default)
    return ports[0], ports[1]


def _label(record: WantedRecord, domain: str, zone_name: str) -> str:
    fqdn = record.fqdn(domain)
    return "@" if fqdn == zone_name else fqdn[: -len(zone_name) - 1]


def do_publish_records(domain: MailDomain, *, actor) -> list:
    """Add the missing records to the owner's zone, when the panel serves it. Returns the
    records added (none when the zone is not ours: the page shows them instead)."""
    from dns.models import Record
    from dns.services import do_create_record, zone_serving

    zone = zone_serving(domain.domain, user=domain.owner)
    if zone is None:
        return []
    added = []
    for record in wanted(domain):
        label = _label(record, domain.domain, zone.name)
        existing = Record.objects.filter(zone=zone, name=label, type=record.type)
        if record.marker:
            existing = existing.filter(content__startswith=record.marker)
        if existing.exists():
            continue
        data = {"name": label, "type": record.type, "content": record.content}
        try:
            with transaction.atomic():
                added.append(do_create_record(zone, actor=actor, data=data))
        except ValidationError:
            continue  # a CNAME there, or the zone is full: the page shows what to publish
    return added


def status(domain: MailDomain) -> list[dict]:
    """Each wanted record and whether the owner's zone here holds it (two queries)."""
    from dns.models import Record
    from dns.services import zone_serving

    zone = zone_serving(domain.domain, user=domain.owner)
    present: set[tuple[str, str, str]] = set()
    if zone is not None:
        present = set(Record.objects.filter(zone=zone).values_list("name", "type", "content"))
    checked = {(r.get("name"), r.get("type")): r for r in domain.dns_check or []}
    rows = []
    for record in wanted(domain):
        label = _label(record, domain.domain, zone.name) if zone else ""
        found = any(
            n == label
            and t == record.type
            and (c.startswith(record.marker) if record.marker else c == record.content)
            for n, t, c in present
        )
        rows.append(
            {
                "name": record.fqdn(domain.domain),
                "type": record.type,
                "content": record.content,
                "in_zone": found,
                "dns_state": checked.get((record.fqdn(domain.domain), record.type), {}).get(
                    "state", ""
                ),
                "dns_found": checked.get((record.fqdn(domain.domain), record.type), {}).get(
                    "found", []
                ),
            }
        )
    return rows
