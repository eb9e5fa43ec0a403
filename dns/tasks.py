"""Operation tasks of the DNS app (django-q2 runs them through core.operations)."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from core.operations import OperationContext, OperationError
from dns.models import Zone
from dns.providers import DnsError


def import_axfr(
    ctx: OperationContext, zone_id: int, host: str, port: int, replace: bool, tsig=None
) -> str:
    """Transfer a zone from another server and store its records (all or none)."""
    from core import crypto
    from dns.zonefiles import import_records, transfer

    zone = Zone.objects.filter(pk=zone_id).first()
    if zone is None:
        raise OperationError("The zone was deleted.")
    signed = f" (TSIG key {tsig['name']})" if tsig else ""
    ctx.progress(10, f"Transferring {zone.name} from {host}:{port}{signed}")
    try:
        key = {**tsig, "secret": crypto.decrypt(tsig["secret"])} if tsig else None
        parsed = transfer(zone, host, port, tsig=key)
    except DnsError as exc:
        raise OperationError(str(exc)) from exc
    ctx.progress(60, "Checking and storing the records")
    try:
        result = import_records(
            zone, parsed, actor=ctx.op.requested_by, replace=replace, how=f"AXFR {host}:{port}"
        )
    except ValidationError as exc:
        for message in exc.messages:
            ctx.log(message, "warning")
        raise OperationError("Nothing was imported: " + "; ".join(exc.messages[:3])) from exc
    for item in result.skipped[:20]:
        ctx.log(f"Left out (the zone's own or a signer's): {item}")
    return f"{result.added} records imported, {result.removed} replaced"


def check_ns(ctx: OperationContext, zone_id: int) -> str:
    """Verify one zone's delegation and its nameservers' serials (dns/nscheck.py)."""
    from dns.nscheck import check_zone

    zone = Zone.objects.filter(pk=zone_id).first()
    if zone is None:
        raise OperationError("The zone was deleted.")
    ctx.progress(10, f"Asking the parent zone and the nameservers of {zone.name}")
    result = check_zone(zone)
    for problem in result.problems:
        ctx.log(problem, "warning")
    if result.status != Zone.NsStatus.OK:
        raise OperationError(f"{zone.get_ns_status_display()}: {result.message}")
    return "Delegated to our nameservers; every nameserver serves the same serial."
