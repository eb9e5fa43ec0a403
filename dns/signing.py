"""DNSSEC: a zone signed by each nameserver of its group (BIND: ``dnssec-policy default`` with
inline signing; PowerDNS: a CSK through its API), and the DS records for the registrar,
computed from the DNSKEYs the nameservers serve (``dns.dnssec.make_ds``, SHA-256).

Each nameserver signs with its own key: a group of several kinds gives one DS per signer,
and the registrar needs them all (a multi-signer zone).
"""

from __future__ import annotations

import time

import dns.dnssec
import dns.name
from core.operations import OperationContext, OperationError
from dns.models import Nameserver, Zone
from dns.providers import DnsError, adapter_for

SEP = 0x0001  # DNSKEY flag: a key signing key, the one the parent's DS points at
WAIT_SECONDS = 30
POLL_SECONDS = 0.2


def ds_records(zone: Zone) -> list[str]:
    """``zone. IN DS ...`` for every key-signing DNSKEY the zone's nameservers serve."""
    origin = dns.name.from_text(zone.name + ".")
    found: set[str] = set()
    for ns in Nameserver.objects.filter(group_id=zone.group_id):
        keys = adapter_for(ns).query(zone.name, "@", "DNSKEY")
        for key in keys or ():
            if key.flags & SEP:
                ds = dns.dnssec.make_ds(origin, key, "SHA256")
                found.add(f"{zone.name}. IN DS {ds.to_text()}")
    return sorted(found)


def sign_zone(ctx: OperationContext, zone_id: int, nameserver_id: int) -> str:
    """Operation task: make one nameserver serve the zone signed or unsigned as the zone
    says now, wait until its answers carry (or lose) their signatures, and store the DS
    records of every nameserver of the group."""
    zone = Zone.objects.filter(pk=zone_id).first()
    ns = Nameserver.objects.filter(pk=nameserver_id).first()
    if zone is None or ns is None:
        raise OperationError("The zone or its nameserver was deleted.")
    adapter = adapter_for(ns)
    verb = "Signing" if zone.dnssec else "Unsigning"
    ctx.progress(10, f"{verb} {zone.name} on {adapter}")
    try:
        adapter.set_signing(zone.name, zone.dnssec)
        ctx.progress(50, "Waiting for the nameserver's answers")
        deadline = time.monotonic() + WAIT_SECONDS
        while adapter.signed(zone.name) != zone.dnssec:
            if time.monotonic() > deadline:
                state = "still signs" if not zone.dnssec else "does not sign"
                raise OperationError(f"{adapter} {state} {zone.name} after {WAIT_SECONDS} s.")
            time.sleep(POLL_SECONDS)
        ctx.progress(80, "Computing the DS records from the served DNSKEYs")
        ds = ds_records(zone) if zone.dnssec else []
    except DnsError as exc:
        raise OperationError(str(exc)) from exc
    Zone.objects.filter(pk=zone.pk).update(ds_records="\n".join(ds))
    for line in ds:
        ctx.log(line)
    if zone.dnssec:
        return f"{adapter} signs {zone.name}; {len(ds)} DS record(s) for the registrar"
    return f"{adapter} serves {zone.name} unsigned"
