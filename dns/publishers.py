"""Publishing zones to their nameservers: the DNS app's publisher (servers/engine/publisher.py,
docs/apply-engine.md "Publishers"; docs/dns.md "Publishing").

A publish target is one nameserver (``Nameserver.key``). Its units are ``zone:<zone>`` (the
zone exists there, with its SOA, serial included, and apex NS) and
``rrset:<zone>:<name>/<TYPE>`` (one record set). Services mark the units a change touches and
start one Operation per nameserver of the zone's group.

Incremental: the plan compares the desired record sets of the dirty units with
``PublishedRRSet`` (what this nameserver was last sent and verified to serve), never with a
transfer of the whole zone; only a zone the table knows nothing about is read from the
server. Every update says what the plan expected (RFC 2136 prerequisites; for PowerDNS a
read just before the PATCH), so a record changed on the server by hand refuses the update
and the zone shows the error instead of the change silently overwriting it. Verification
asks the server by DNS (queries, or one AXFR for big changes).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django.utils import timezone

from core import events as core_events
from dns.providers import (
    QUERY_LIMIT,
    STALE,
    Adapter,
    Change,
    DnsError,
    NothingApplied,
    RRState,
    ZoneState,
    adapter_for,
)
from servers.engine import ApplyError, UnitFailed
from servers.engine.publisher import Desired, Publisher, Refused, bisect

PUBLISHER = "dns"
# More record sets than this in one change: mark the whole zone (one row, not thousands).
MANY_UNITS = 500


class Target:
    def __init__(self, ns) -> None:
        self.ns = ns
        self.adapter: Adapter = adapter_for(ns)

    @property
    def lock_key(self) -> str:
        return self.ns.lock_key

    def __str__(self) -> str:
        return str(self.adapter)


def parse_unit(unit: str) -> tuple[str, tuple[str, str] | None]:
    """``zone:example.com`` -> (example.com, None); ``rrset:example.com:www/A`` ->
    (example.com, ("www", "A"))."""
    kind, _, rest = unit.partition(":")
    if kind in ("zone", "records") and rest:
        return rest, None
    zone, _, key = rest.partition(":")
    name, _, rdtype = key.rpartition("/")
    if kind != "rrset" or not zone or not name or not rdtype:
        raise ValueError(f"{unit!r} is not a DNS unit")
    return zone, (name, rdtype)


def zone_unit(zone: str) -> str:
    return f"zone:{zone}"


def records_unit(zone: str) -> str:
    """Every record set of the zone: what a big change (an import) marks instead of tens of
    thousands of rrset units; the plan compares the zone's whole published state."""
    return f"records:{zone}"


def _whole_zones(units: Iterable[str] | None) -> set[str]:
    return {u.partition(":")[2] for u in units or () if u.startswith("records:")}


def rrset_unit(zone: str, key: tuple[str, str]) -> str:
    return f"rrset:{zone}:{key[0]}/{key[1]}"


def group_ns_names(group_id) -> list[str]:
    """The NS names a group's zones show: its vanity names when it has them, else the
    nameservers' own hostnames."""
    from dns.models import Nameserver, NameserverGroup

    group = NameserverGroup.objects.filter(pk=group_id).first()
    if group is not None and group.vanity:
        return group.vanity
    return list(Nameserver.objects.filter(group_id=group_id).values_list("hostname", flat=True))


def zone_state(zone, nameservers: Iterable[str]) -> ZoneState:
    names = tuple(sorted(f"{n}." for n in nameservers))
    mname = names[0] if names else f"ns1.{zone.name}."
    rname = f"{zone.soa_rname or 'hostmaster.' + zone.name}."
    return ZoneState(
        mname,
        rname,
        zone.serial,
        zone.soa_refresh,
        zone.soa_retry,
        zone.soa_expire,
        zone.soa_minimum,
        zone.default_ttl,
        names,
    )


class ZonePublisher(Publisher):
    name = PUBLISHER
    unit_prefix = ""  # two kinds of unit: zone: and rrset:

    def __init__(self) -> None:
        self._runs = threading.local()  # desired states of the run, for report()

    # -- the target and what should be live -------------------------------------------------
    def target(self, key: str) -> Target:
        from dns.models import Nameserver

        ns = Nameserver.objects.filter(uuid=_uuid(key)).first() if _uuid(key) else None
        if ns is None:
            raise ApplyError(f"no nameserver {key!r}")
        return Target(ns)

    def lock_key(self, target: Target) -> str:
        return target.lock_key

    def desired(self, target: Target, units: set[str] | None) -> Iterable[Desired | UnitFailed]:
        from dns.models import PublishedRRSet, Record, Zone

        ns = target.ns
        zones = Zone.objects.filter(group_id=ns.group_id)
        wanted: dict[str, set[tuple[str, str]] | None] = {}  # zone -> keys (None: all)
        if units is None:
            wanted = {name: None for name in zones.values_list("name", flat=True)}
        else:
            whole = _whole_zones(units)
            for unit in units:
                try:
                    zone, key = parse_unit(unit)
                except ValueError as exc:
                    yield UnitFailed(unit, str(exc))
                    continue
                if zone in whole:
                    wanted[zone] = None
                    continue
                keys = wanted.setdefault(zone, set())
                if key is not None and keys is not None:
                    keys.add(key)
        if units is not None and wanted:
            # A zone this nameserver has no recorded SOA for (new here, found stale, or a
            # run that died mid-way): the plan reads what the server serves, so the whole
            # zone is wanted, or record sets outside this change would look unwanted.
            known = set(
                PublishedRRSet.objects.filter(
                    nameserver=ns, zone_name__in=list(wanted), name="@", type="SOA"
                ).values_list("zone_name", flat=True)
            )
            for name in wanted:
                if name not in known:
                    wanted[name] = None
        hostnames = group_ns_names(ns.group_id)
        found = {z.name: z for z in zones.filter(name__in=list(wanted))}
        out: list[Desired] = []
        for name, keys in wanted.items():
            zone = found.get(name)
            if zone is None:
                continue  # gone, or no longer served here: every unit is removed
            out.append(Desired(zone_unit(name), zone_state(zone, hostnames)))
            records = Record.objects.filter(zone=zone)
            if keys is not None:
                if not keys:
                    continue
                names = {n for n, _t in keys}
                records = records.filter(name__in=names)
            sets: dict[tuple[str, str], list] = defaultdict(list)
            ttls: dict[tuple[str, str], int] = {}
            for rname, rdtype, ttl, content in records.values_list(
                "name", "type", "ttl", "content"
            ).iterator(chunk_size=5000):
                key = (rname, rdtype)
                if keys is not None and key not in keys:
                    continue
                sets[key].append(content)
                if ttl is not None:
                    ttls[key] = ttl
            for key, texts in sets.items():
                state = RRState(ttls.get(key, zone.default_ttl), frozenset(texts))
                out.append(Desired(rrset_unit(name, key), state))
        self._runs.desired = {d.unit: d.state for d in out}
        yield from out

    # -- the plan: the published-state table ---------------------------------------------------
    def plan(self, target: Target, desired: dict[str, Any], units: set[str] | None):
        from servers.engine.publisher import Change as UnitChange
        from servers.engine.publisher import Plan

        whole = _whole_zones(units)
        scope = {u for u in set(desired) | set(units or ()) if not u.startswith("records:")}
        zones = {parse_unit(u)[0] for u in scope} | whole
        if units is None:
            zones |= self._published_zones(target)
        before: dict[str, Any] = {}
        for zone in sorted(zones):
            everything = units is None or zone in whole
            known = self._published(target, zone, None if everything else scope)
            if zone_unit(zone) in known:
                before.update(known)
                if everything:
                    scope |= set(known)
                continue
            # Nothing recorded for this zone here: ask the server what it serves.
            if not target.adapter.zone_exists(zone):
                continue
            state, served = target.adapter.read_zone(zone)
            if state is not None:
                before[zone_unit(zone)] = state
            for key, rr in served.items():
                unit = rrset_unit(zone, key)
                before[unit] = rr
                scope.add(unit)  # what the panel does not have goes
            scope.add(zone_unit(zone))
        changes = {
            u: UnitChange(u, before.get(u), desired.get(u))
            for u in sorted(scope)
            if before.get(u) != desired.get(u)
        }
        # A zone being removed takes its record sets with it: one change, the zone's.
        gone = {
            parse_unit(u)[0]
            for u, c in changes.items()
            if u.startswith("zone:") and c.after is None
        }
        changes = {
            u: c
            for u, c in changes.items()
            if u.startswith("zone:") or parse_unit(u)[0] not in gone
        }
        self._runs.before = before
        return Plan(changes, scope - set(changes))

    def _published_zones(self, target: Target) -> set[str]:
        from dns.models import PublishedRRSet

        rows = PublishedRRSet.objects.filter(nameserver=target.ns, type="SOA", name="@")
        return set(rows.values_list("zone_name", flat=True))

    def _published(self, target: Target, zone: str, units: set[str] | None) -> dict[str, Any]:
        from dns.models import PublishedRRSet

        rows = PublishedRRSet.objects.filter(nameserver=target.ns, zone_name=zone)
        if units is not None:
            names = {"@"} | {
                k[0] for u in units if (k := parse_unit(u)[1]) and parse_unit(u)[0] == zone
            }
            rows = rows.filter(name__in=names)
        out = {}
        for name, rdtype, ttl, records in rows.values_list("name", "type", "ttl", "records"):
            if rdtype == "SOA" and name == "@":
                out[zone_unit(zone)] = ZoneState(*records[:8], tuple(records[8]))
            else:
                unit = rrset_unit(zone, (name, rdtype))
                if units is None or unit in units:
                    out[unit] = RRState(ttl, frozenset(records))
        return out

    # -- the nameserver's side ---------------------------------------------------------------
    def read(self, target: Target, units: set[str] | None) -> dict[str, Any]:
        """What the server answers for ``units``: DNS queries, or one transfer per zone with
        many of them (queries would see wildcard answers: zones with wildcards transfer)."""
        from dns.models import Record

        by_zone: dict[str, list[tuple[str, str] | None]] = defaultdict(list)
        for unit in units or ():
            zone, key = parse_unit(unit)
            by_zone[zone].append(key)
        out: dict[str, Any] = {}
        adapter = target.adapter
        for zone, keys in by_zone.items():
            rr_keys = [k for k in keys if k is not None]
            wildcard = Record.objects.filter(zone__name=zone, name__startswith="*").exists()
            state = adapter.zone_state(zone)
            if state is not None:
                out[zone_unit(zone)] = state
            else:
                continue
            if len(rr_keys) > QUERY_LIMIT or wildcard:
                _state, served = adapter.read_zone(zone)
                for key in rr_keys:
                    if key in served:
                        out[rrset_unit(zone, key)] = served[key]
            else:
                for key, rr in adapter.served(zone, rr_keys).items():
                    out[rrset_unit(zone, key)] = rr
        return out

    def apply(self, target: Target, changes: dict) -> dict[str, str]:
        from dns.models import PublishedRRSet

        refused: dict[str, str] = {}
        by_zone: dict[str, dict[str, Any]] = defaultdict(dict)
        for unit, change in changes.items():
            by_zone[parse_unit(unit)[0]][unit] = change
        # In flight: until this run reports, what these zones serve here is not known. The
        # zone's SOA row goes first (committed before anything is sent) and comes back in
        # the report, so a run that dies between two update batches (a killed worker) leaves
        # the next one to read what the server serves instead of trusting stale rows.
        in_flight = [z for z, zc in by_zone.items() if zone_unit(z) in zc]
        PublishedRRSet.objects.filter(
            nameserver=target.ns, zone_name__in=in_flight, name="@", type="SOA"
        ).delete()
        applied_any = False
        for zone, zchanges in sorted(by_zone.items()):
            try:
                failed = self._apply_zone(target, zone, zchanges)
            except Refused as exc:
                if applied_any:
                    raise ApplyError(str(exc), retryable=exc.retryable) from exc
                if len(by_zone) == 1:
                    raise
                failed = dict.fromkeys(zchanges, str(exc))
            if len(failed) < len(zchanges):
                applied_any = True
            refused.update(failed)
        return refused

    def _apply_zone(self, target: Target, zone: str, changes: dict) -> dict[str, str]:
        adapter = target.adapter
        zc = changes.get(zone_unit(zone))
        if zc is not None and zc.after is None:
            try:
                adapter.delete_zone(zone)
            except NothingApplied as exc:
                raise Refused(str(exc), retryable=exc.retryable) from exc
            return {}
        rr_units = sorted(u for u in changes if not u.startswith("zone:"))
        if zc is not None and zc.before is None:
            if self._create_whole(adapter, zone, zc.after, changes, rr_units):
                rr_units = []  # they arrived with the zone
            if _signed(zone):  # a signed zone new on this nameserver is signed here too
                adapter.set_signing(zone, True)
            if not rr_units:
                return {}
        soa = zc.after if zc is not None else None

        def send(group: list[str]) -> str | None:
            items = [Change(parse_unit(u)[1], changes[u].before, changes[u].after) for u in group]
            try:
                return adapter.update(zone, soa, items, checked=True)
            except NothingApplied as exc:
                raise Refused(str(exc), retryable=exc.retryable) from exc

        if not rr_units:
            said = send([])
            return {zone_unit(zone): said} if said else {}
        failed: dict[str, str] = {}
        batch = adapter.batch
        for start in range(0, len(rr_units), batch):
            try:
                failed.update(bisect(rr_units[start : start + batch], send))
            except Refused as exc:
                if start == 0 and not (zc is not None and zc.before is None):
                    raise
                raise ApplyError(str(exc), retryable=exc.retryable) from exc
        return failed

    @staticmethod
    def _create_whole(adapter, zone: str, state, changes: dict, rr_units: list[str]) -> bool:
        """Create a zone new on the nameserver with its record sets in the same step (one
        zone file or one API call instead of an UPDATE per 200 record sets, and the serial
        served is exactly the zone's). Should the nameserver refuse that, one record set may
        be to blame: the bare zone is created and the caller sends the record sets in
        updates, where a refused one fails alone. Returns whether the records went along."""
        records = {parse_unit(u)[1]: changes[u].after for u in rr_units}
        try:
            adapter.create_zone(zone, state, records)
            return True
        except NothingApplied as exc:
            if not records:
                raise Refused(str(exc), retryable=exc.retryable) from exc
        try:
            adapter.create_zone(zone, state)
        except NothingApplied as exc:
            raise Refused(str(exc), retryable=exc.retryable) from exc
        return False

    def revert(self, target: Target, changes: dict) -> None:
        by_zone: dict[str, dict[str, Any]] = defaultdict(dict)
        for unit, change in changes.items():
            by_zone[parse_unit(unit)[0]][unit] = change
        adapter = target.adapter
        for zone, zchanges in by_zone.items():
            zc = zchanges.get(zone_unit(zone))
            try:
                if zc is not None and zc.before is None:
                    adapter.delete_zone(zone)
                    continue
                if zc is not None and zc.after is None:
                    raise DnsError(f"{zone} was removed from {target} and cannot be put back")
                back = [
                    Change(parse_unit(u)[1], c.after, c.before)
                    for u, c in sorted(zchanges.items())
                    if not u.startswith("zone:")
                ]
                soa = zc.before if zc is not None else None
                for start in range(0, max(len(back), 1), adapter.batch):
                    part = back[start : start + adapter.batch]
                    said = adapter.update(zone, soa, part, checked=False)
                    if said:
                        raise DnsError(said, retryable=True)
            except NothingApplied as exc:
                raise DnsError(str(exc), retryable=True) from exc

    def verify(self, target: Target, expected: dict[str, Any]) -> dict[str, str]:
        """As the base class, except that a zone's serial may be higher than the one sent: a
        change too big for one UPDATE message goes in several, and BIND counts each."""
        served = self.read(target, set(expected))
        wrong = {}
        for unit, want in sorted(expected.items()):
            got = served.get(unit)
            if isinstance(got, ZoneState) and isinstance(want, ZoneState):
                if got.serial >= want.serial and replace(got, serial=want.serial) == want:
                    continue
            elif got == want:
                continue
            wrong[unit] = f"serves {self.describe(got)}, expected {self.describe(want)}"
        return wrong

    def describe(self, state: Any) -> str:
        return "nothing" if state is None else str(state)

    # -- after every run --------------------------------------------------------------------------
    def report(self, target: Target, ok: set[str], failed: dict[str, str]) -> None:
        from dns.models import PublishedRRSet, Zone

        desired = getattr(self._runs, "desired", {})
        self._runs.desired, self._runs.before = {}, {}
        ns = target.ns
        rows, gone_units, gone_zones = [], [], set()
        for unit in ok:
            zone, key = parse_unit(unit)
            state = desired.get(unit)
            if state is None:
                if key is None:
                    gone_zones.add(zone)
                else:
                    gone_units.append((zone, key))
                continue
            if key is None:
                records = [*list(state.__dict__.values())[:8], list(state.nameservers)]
                rows.append(
                    PublishedRRSet(
                        nameserver=ns,
                        zone_name=zone,
                        name="@",
                        type="SOA",
                        ttl=state.ttl,
                        records=records,
                    )
                )
            else:
                rows.append(
                    PublishedRRSet(
                        nameserver=ns,
                        zone_name=zone,
                        name=key[0],
                        type=key[1],
                        ttl=state.ttl,
                        records=sorted(state.records),
                    )
                )
        if rows:
            PublishedRRSet.objects.bulk_create(
                rows,
                batch_size=2000,
                update_conflicts=True,
                unique_fields=["nameserver", "zone_name", "name", "type"],
                update_fields=["ttl", "records"],
            )
        for zone, (name, rdtype) in gone_units:
            PublishedRRSet.objects.filter(
                nameserver=ns, zone_name=zone, name=name, type=rdtype
            ).delete()
        if gone_zones:
            PublishedRRSet.objects.filter(nameserver=ns, zone_name__in=gone_zones).delete()
        stale = {parse_unit(u)[0] for u, why in failed.items() if STALE in why}
        if stale:  # the next plan reads these zones from the server
            PublishedRRSet.objects.filter(
                nameserver=ns, zone_name__in=stale, name="@", type="SOA"
            ).delete()
        # Zone statuses: published once every unit of the run went through.
        problems: dict[str, str] = {}
        for unit, why in sorted(failed.items()):
            zone, key = parse_unit(unit)
            label = "the zone" if key is None else f"{key[0]} {key[1]}"
            problems.setdefault(zone, f"{target.ns.hostname}: {label}: {why}")
        touched = {parse_unit(u)[0] for u in ok} | set(problems)
        now = timezone.now()
        for zone in Zone.objects.filter(name__in=touched):
            if zone.name in problems:
                zone.status, zone.status_message = Zone.Status.ERROR, problems[zone.name][:2000]
            else:
                state = desired.get(zone_unit(zone.name))
                zone.status, zone.status_message = Zone.Status.PUBLISHED, ""
                if state is not None:
                    zone.published_serial = state.serial
                zone.published_at = now
            zone.save(
                update_fields=["status", "status_message", "published_serial", "published_at"]
            )
            core_events.changed(zone)  # the zone's open page shows the new status


def _signed(zone: str) -> bool:
    from dns.models import Zone

    return Zone.objects.filter(name=zone, dnssec=True).exists()


def _uuid(key: str):
    import uuid

    try:
        return uuid.UUID(hex=key)
    except (ValueError, TypeError):
        return None


# -- starting publishes (dns.services calls these) ---------------------------------------------
def start_zone_publish(zone, *, actor, units: set[str] | None = None) -> list:
    """One publish Operation per nameserver of the zone's group (none without a group).
    ``units`` None: the whole zone (its zone unit, and every record set it has)."""
    from dns.models import Nameserver
    from servers.services import start_publish

    if zone.group_id is None:
        return []
    nameservers = list(Nameserver.objects.filter(group_id=zone.group_id))
    if not nameservers:
        return []
    if units is None or len(units) > MANY_UNITS:
        units = {records_unit(zone.name)}
    units = set(units)
    units.add(zone.unit)  # the serial changes with every change: the SOA goes along
    return [
        start_publish(PUBLISHER, ns.key, actor=actor, owner=zone.owner, units=units, shown_on=zone)
        for ns in nameservers
    ]


def start_zone_removal(zone, *, actor, group_id=None) -> list:
    """Remove the zone from the nameservers of its group (the row is about to go), or of
    ``group_id``, the group it was moved away from."""
    from dns.models import Nameserver
    from servers.services import start_publish

    group_id = group_id if group_id is not None else zone.group_id
    if group_id is None:
        return []
    return [
        start_publish(PUBLISHER, ns.key, actor=actor, owner=zone.owner, units={zone.unit})
        for ns in Nameserver.objects.filter(group_id=group_id)
    ]
