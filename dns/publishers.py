"""Publishing zones to their nameservers: the DNS app's publisher (servers/engine/publisher.py).

A publish target is one nameserver (``Nameserver.key``); its units are ``zone:<zone uuid>``
(the zone exists there, with its SOA and apex NS) and ``rrset:<zone uuid>:<name>/<TYPE>``
(one record set). Services mark the units a change touches and start one Operation per
nameserver of the zone's group.
"""

from __future__ import annotations

from servers.services import start_publish

PUBLISHER = "dns"


def start_zone_publish(zone, *, actor, units: set[str] | None = None) -> list:
    """One publish Operation per nameserver of the zone's group (none without a group).
    ``units`` None: the whole zone (its zone unit, and every record set it has)."""
    from dns.models import Nameserver

    if zone.group_id is None:
        return []
    nameservers = list(Nameserver.objects.filter(group_id=zone.group_id))
    if not nameservers:
        return []
    units = set(units) if units is not None else all_units(zone)
    units.add(zone.unit)  # the serial changes with every change: the SOA goes along
    return [
        start_publish(PUBLISHER, ns.key, actor=actor, owner=zone.owner, units=units, shown_on=zone)
        for ns in nameservers
    ]


def start_zone_removal(zone, *, actor) -> list:
    """Remove the zone from the nameservers that serve it (before its row goes)."""
    return []


def all_units(zone) -> set[str]:
    from dns.models import Record
    from dns.services import rrset_unit

    pairs = Record.objects.filter(zone=zone).values_list("name", "type").distinct()
    return {zone.unit} | {rrset_unit(zone, n, t) for n, t in pairs}
