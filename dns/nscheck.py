"""NS verification: is a zone delegated to the panel's nameservers, and do they all serve it?

For a zone, ``check_zone`` asks
- the parent zone's servers (found through the resolvers in ``PANEL_DNS_RESOLVERS``, or
  given) for the delegation: the NS names they list must be the zone's expected names (its
  group's vanity names, else its nameservers' hostnames);
- each nameserver of the group (primary and secondaries) for the zone's SOA and NS: each must
  answer authoritatively with the expected NS names, and every serial must be the same and
  at least the one the panel last published.

The result is stored on the zone (``ns_status``, ``ns_message``, ``ns_checked_at``).
``check_all`` runs on a schedule (``PANEL_DNS_NS_CHECK_MINUTES``). Other apps (monitoring's
"NS mismatch" alert source) call ``check_zone`` or read ``mismatched_zones()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.resolver
from dns.models import Nameserver, Zone

TIMEOUT = 3.0


@dataclass
class NsCheck:
    status: str
    problems: list[str] = field(default_factory=list)
    parent_ns: set[str] = field(default_factory=set)
    serials: dict[str, int | None] = field(default_factory=dict)
    ds_status: str = ""

    @property
    def message(self) -> str:
        return "; ".join(self.problems)


def _ask(host: str, port: int, qname: str, rdtype: str) -> dns.message.Message:
    """One non-recursive question over UDP (TCP when truncated)."""
    q = dns.message.make_query(qname, rdtype)
    q.flags &= ~dns.flags.RD
    response, _tcp = dns.query.udp_with_fallback(q, host, port=port, timeout=TIMEOUT)
    return response


def _ns_names(response: dns.message.Message, qname: str) -> set[str]:
    """The NS names for ``qname`` in an answer, or in a referral's authority section."""
    name = dns.name.from_text(qname)
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.name == name and rrset.rdtype == dns.rdatatype.NS:
                return {r.target.to_text().lower() for r in rrset}
    return set()


def _resolver() -> dns.resolver.Resolver:
    configured = list(getattr(settings, "PANEL_DNS_RESOLVERS", []) or [])
    if not configured:
        return dns.resolver.Resolver()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = configured
    resolver.lifetime = TIMEOUT * 2
    return resolver


def parent_servers(zone_name: str) -> list[tuple[str, int]]:
    """Addresses of the parent zone's nameservers, through the configured resolvers."""
    resolver = _resolver()
    parent = dns.name.from_text(zone_name).parent()
    parent_zone = dns.resolver.zone_for_name(parent, resolver=resolver)
    out: list[tuple[str, int]] = []
    for ns in resolver.resolve(parent_zone, "NS"):
        for rdtype in ("A", "AAAA"):
            try:
                out += [(a.address, 53) for a in resolver.resolve(ns.target, rdtype)]
            except dns.exception.DNSException:
                continue
    return out


def expected_names(zone: Zone) -> set[str]:
    from dns.publishers import group_ns_names

    return {f"{n}." for n in group_ns_names(zone.group_id)}


def check_zone(zone: Zone, *, parent: list[tuple[str, int]] | None = None, save: bool = True):
    """Verify one zone's delegation and its nameservers' serials; store the outcome."""
    problems: list[str] = []
    status = Zone.NsStatus.OK
    qname = f"{zone.name}."
    expected = expected_names(zone)
    result = NsCheck(status)
    if not expected:
        result.status, result.problems = Zone.NsStatus.ERROR, ["The zone has no nameservers."]
        return _store(zone, result, save)
    # The delegation at the parent.
    try:
        servers = parent if parent is not None else parent_servers(zone.name)
    except dns.exception.DNSException as exc:
        servers = []
        problems.append(f"The parent zone's nameservers cannot be found: {exc}")
        status = Zone.NsStatus.ERROR
    for host, port in servers:
        try:
            names = _ns_names(_ask(host, port, qname, "NS"), qname)
        except (OSError, dns.exception.DNSException) as exc:
            problems.append(f"Parent server {host} did not answer: {exc}")
            status = Zone.NsStatus.ERROR
            continue
        result.parent_ns |= names
        if names != expected:
            listed = ", ".join(sorted(names)) or "nothing"
            problems.append(
                f"The parent ({host}) delegates to {listed}; expected "
                f"{', '.join(sorted(expected))}."
            )
            status = Zone.NsStatus.MISMATCH
    # DNSSEC: the parent's DS must match a key the zone is signed with (and there must be
    # none for an unsigned zone, or validating resolvers reject every answer).
    ds_problem = _check_ds(zone, servers, result)
    if ds_problem:
        problems.append(ds_problem)
        status = Zone.NsStatus.MISMATCH if status == Zone.NsStatus.OK else status
    # Each nameserver of the group: authoritative, our NS, one serial.
    for ns in Nameserver.objects.filter(group_id=zone.group_id):
        try:
            soa = _ask(ns.host, ns.port, qname, "SOA")
            names = _ns_names(_ask(ns.host, ns.port, qname, "NS"), qname)
        except (OSError, dns.exception.DNSException) as exc:
            problems.append(f"{ns.hostname} did not answer: {exc}")
            result.serials[ns.hostname] = None
            status = Zone.NsStatus.ERROR if status == Zone.NsStatus.OK else status
            continue
        serial = next(
            (r.serial for rrset in soa.answer if rrset.rdtype == dns.rdatatype.SOA for r in rrset),
            None,
        )
        result.serials[ns.hostname] = serial
        if serial is None or not soa.flags & dns.flags.AA:
            problems.append(f"{ns.hostname} does not serve the zone.")
            status = Zone.NsStatus.MISMATCH
            continue
        if names != expected:
            problems.append(f"{ns.hostname} lists NS {', '.join(sorted(names)) or 'nothing'}.")
            status = Zone.NsStatus.MISMATCH
        if serial < zone.published_serial:
            problems.append(
                f"{ns.hostname} serves serial {serial}, behind the published "
                f"{zone.published_serial}."
            )
            status = Zone.NsStatus.MISMATCH
    serials = {s for s in result.serials.values() if s is not None}
    if len(serials) > 1:
        shown = ", ".join(f"{h} {s}" for h, s in sorted(result.serials.items()))
        problems.append(f"The nameservers serve different serials ({shown}).")
        status = Zone.NsStatus.MISMATCH
    result.status, result.problems = status, problems
    return _store(zone, result, save)


def _ds_key(rdata) -> tuple:
    return (rdata.key_tag, rdata.algorithm, rdata.digest_type, rdata.digest)


def _check_ds(zone: Zone, servers: list[tuple[str, int]], result: NsCheck) -> str:
    """Compare the DS records the parent's servers hold for the zone with the zone's own
    (computed from the keys its nameservers sign with); sets ``result.ds_status`` and
    returns a problem to report, or ""."""
    import dns.rdata
    import dns.rdataclass

    ours = set()
    for line in zone.ds_list if zone.dnssec else []:
        try:
            ours.add(_ds_key(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, line)))
        except dns.exception.DNSException:
            continue
    qname = dns.name.from_text(f"{zone.name}.")
    at_parent: set[tuple] = set()
    for host, port in servers:
        try:
            response = _ask(host, port, qname.to_text(), "DS")
        except (OSError, dns.exception.DNSException):
            continue  # said already by the delegation check
        for rrset in response.answer:
            if rrset.name == qname and rrset.rdtype == dns.rdatatype.DS:
                at_parent |= {_ds_key(r) for r in rrset}
    if not at_parent:
        result.ds_status = Zone.DsStatus.WAITING if ours else Zone.DsStatus.NONE
        return ""
    if not zone.dnssec:
        result.ds_status = Zone.DsStatus.MISMATCH
        return (
            "The parent holds DS records but the zone is not signed: validating resolvers "
            "reject its answers. Remove the DS at the registrar, or sign the zone."
        )
    if at_parent & ours:
        result.ds_status = Zone.DsStatus.OK
        return ""
    result.ds_status = Zone.DsStatus.MISMATCH
    return (
        "The parent's DS records match none of the zone's keys: validating resolvers reject "
        "its answers. Give the registrar the DS records shown on the zone's page."
    )


def _store(zone: Zone, result: NsCheck, save: bool) -> NsCheck:
    if save:
        Zone.objects.filter(pk=zone.pk).update(
            ns_status=result.status,
            ns_message=result.message[:2000],
            ns_checked_at=timezone.now(),
            ds_status=result.ds_status,
        )
        zone.ds_status = result.ds_status
        zone.ns_status, zone.ns_message = result.status, result.message[:2000]
    return result


def check_all() -> int:
    """The scheduled check: every zone with nameservers; returns how many mismatch."""
    bad = 0
    for zone in Zone.objects.exclude(group=None).iterator():
        if check_zone(zone).status != Zone.NsStatus.OK:
            bad += 1
    return bad


def mismatched_zones():
    """Zones whose last check found a mismatch or failed: the seam for monitoring's alerts."""
    return Zone.objects.filter(ns_status__in=[Zone.NsStatus.MISMATCH, Zone.NsStatus.ERROR])


def ns_mismatch_source(rule, now):
    """Monitoring's "NS mismatch" alert source: the zones of the rule's owner whose last
    check did not find the delegation and every nameserver in agreement."""
    from core.policy import restrict
    from monitoring.alerts import Finding

    visible = restrict(Zone, rule.owner).filter(pk__in=mismatched_zones().values("pk"))
    for zone in visible.only("uuid", "name", "ns_message"):
        yield Finding(
            subject=f"zone:{zone.uuid.hex}",
            label=zone.name,
            message=zone.ns_message or f"The nameservers of {zone.name} do not agree.",
        )
