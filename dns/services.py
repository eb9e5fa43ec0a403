"""State changes of zones, records and nameservers. Each writes its rows and its audit entry
in one transaction and, when the zone has nameservers, starts their publish on commit.

The field lists here are the only place that says what a caller may write; the admin, the
API and the portal take theirs from them. Errors are per field (ValidationError dicts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from core import audit, events
from core.policy import ADMIN, RESELLER, role_of
from core.services import accept_only, refuse_nul_in
from core.validators import validate_plain_text
from dns.models import Nameserver, NameserverGroup, Record, Zone, ZoneTemplate
from dns.validation import (
    MAX_TTL,
    check_reverse_record,
    is_reverse,
    normalise_content,
    normalise_record_name,
    normalise_zone_name,
    reverse_record_name,
    reverse_zone_for,
    validate_ttl,
)

ZONE_SETTINGS = [
    "default_ttl",
    "soa_rname",
    "soa_refresh",
    "soa_retry",
    "soa_expire",
    "soa_minimum",
]
ZONE_CREATE_FIELDS = ["name", *ZONE_SETTINGS]
ZONE_ADMIN_FIELDS = ["owner", "group"]
ZONE_FIELDS = [*ZONE_CREATE_FIELDS, *ZONE_ADMIN_FIELDS]
# At creation only: a template and its variables; or an IP range (a reverse zone).
ZONE_START_FIELDS = ["template", "variables", "network"]
TEMPLATE_FIELDS = ["name", "records"]
TEMPLATE_VARIABLES = {"zone": "example.com", "server_ip": "10.0.0.1", "server_ipv6": "fd00::1"}
RECORD_FIELDS = ["name", "type", "ttl", "content"]
GROUP_FIELDS = ["name", "is_default", "vanity_nameservers"]
NAMESERVER_FIELDS = [
    "group",
    "hostname",
    "kind",
    "primary",
    "host",
    "port",
    "tsig_key_name",
    "rndc_port",
    "zone_dir",
    "server",
    "api_url",
]
NAMESERVER_SECRETS = ["tsig_secret", "rndc_secret", "api_key"]
MAX_RECORDS_PER_ZONE = 100_000


# -- zones --------------------------------------------------------------------------------
def _check_zone_settings(zone: Zone) -> None:
    errors = {}
    for name in ZONE_SETTINGS:
        value = getattr(zone, name)
        if name == "soa_rname":
            if value:
                try:
                    zone.soa_rname = normalise_zone_name(value)
                except ValidationError as exc:
                    errors[name] = exc.messages
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TTL:
            errors[name] = [f"A whole number of seconds from 0 to {MAX_TTL}."]
    if errors:
        raise ValidationError(errors)


def _owner_for(actor, data: dict):
    """Administrators may make a zone for anyone; resellers for their customers; everyone
    else owns what they create."""
    owner = data.get("owner") or actor
    role = role_of(actor)
    if owner != actor:
        allowed = role == ADMIN or (
            role == RESELLER and getattr(owner, "reseller_id", None) == actor.pk
        )
        if not allowed:
            raise ValidationError({"owner": "You may not create zones for this user."})
    return owner


def do_create_zone(*, actor, data: dict) -> Zone:
    """A zone; with ``template`` (a ZoneTemplate) and ``variables`` it starts with the
    template's records; with ``network`` (an IP range) it is that range's reverse zone."""
    accept_only(data, [*ZONE_FIELDS, *ZONE_START_FIELDS])
    refuse_nul_in(data, ZONE_FIELDS)
    data = dict(data)
    template = data.pop("template", None)
    variables = data.pop("variables", None) or {}
    network = data.pop("network", None)
    if "group" in data and data["group"] is not None and role_of(actor) != ADMIN:
        raise ValidationError({"group": "Only administrators choose the nameserver group."})
    if network:
        try:
            reverse = reverse_zone_for(network)
        except ValidationError as exc:
            raise ValidationError({"network": exc.messages}) from exc
        if data.get("name") and normalise_zone_name(data["name"]) != reverse:
            raise ValidationError({"name": f"The reverse zone of {network} is {reverse}."})
        data["name"] = reverse
    try:
        name = normalise_zone_name(data.get("name", ""))
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages}) from exc
    if Zone.objects.filter(name=name).exists():
        raise ValidationError({"name": f"The zone {name} exists already."})
    if Zone.objects.filter(Q(name__in=_parents(name)) | Q(name__endswith="." + name)).exists():
        raise ValidationError({"name": f"{name} overlaps a zone the panel serves already."})
    group = data.get("group") or NameserverGroup.objects.filter(is_default=True).first()
    zone = Zone(name=name, owner=_owner_for(actor, data), group=group)
    for field in ZONE_SETTINGS:
        if field in data and data[field] is not None:
            setattr(zone, field, data[field])
    _check_zone_settings(zone)
    rows = render_template(template, zone, variables) if template is not None else []
    zone.serial = zone.next_serial()
    with transaction.atomic():
        zone.save()
        Record.objects.bulk_create(Record(zone=zone, **row) for row in rows)
        changes = {"name": [None, name]}
        if template is not None:
            changes["template"] = [None, template.name]
        audit.record("zone.create", zone, actor=actor, changes=changes)
        units = {zone.unit} | {rrset_unit(zone, r["name"], r["type"]) for r in rows}
        publish_zone(zone, actor=actor, units=units)
    return zone


# -- templates ----------------------------------------------------------------------------
_VARIABLE = re.compile(r"\{([a-z_]+)\}")


def _substitute(text, values: dict[str, str]) -> str:
    if text is None:
        return text
    if not isinstance(text, str):
        raise ValidationError("Template values are text.")

    def one(m: re.Match) -> str:
        if m[1] in TEMPLATE_VARIABLES and m[1] not in values:
            raise ValidationError(f"Give a value for {{{m[1]}}} to use this template.")
        if m[1] not in values:
            known = ", ".join(f"{{{k}}}" for k in sorted(TEMPLATE_VARIABLES))
            raise ValidationError(f"Unknown variable {{{m[1]}}} (known: {known}).")
        return values[m[1]]

    return _VARIABLE.sub(one, text)


def render_template(template: ZoneTemplate, zone: Zone, variables: dict) -> list[dict]:
    """The template's records for ``zone``, variables replaced, each checked as a typed
    record is (and against the others); errors name the template's record."""
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ValidationError({"variables": "Variables are names and text values."})
    unknown = set(variables) - set(TEMPLATE_VARIABLES)
    if unknown:
        raise ValidationError({"variables": f"Unknown variables: {', '.join(sorted(unknown))}."})
    values = {**variables, "zone": zone.name}
    rows: list[dict] = []
    at_name: dict[str, list[tuple[str, str]]] = {}
    for i, spec in enumerate(template.records, 1):
        try:
            if not isinstance(spec, dict):
                raise ValidationError("Each record is an object with name, type and content.")
            data = {
                "name": _substitute(spec.get("name", "@"), values),
                "type": spec.get("type"),
                "ttl": spec.get("ttl"),
                "content": _substitute(spec.get("content", ""), values),
            }
            clean = clean_record(zone, data)
            errors = conflicts(
                clean["name"], clean["type"], clean["content"], at_name.get(clean["name"], [])
            )
            if errors:
                raise ValidationError(errors)
        except ValidationError as exc:
            words = "; ".join(exc.messages)
            raise ValidationError({"template": f"Record {i} of {template.name}: {words}"}) from exc
        at_name.setdefault(clean["name"], []).append((clean["type"], clean["content"]))
        rows.append(clean)
    return rows


def do_save_template(*, actor, data: dict, template: ZoneTemplate | None = None) -> ZoneTemplate:
    """Administrators keep templates; every record is checked with sample variable values
    so a template that cannot make a valid zone is refused when saved."""
    accept_only(data, TEMPLATE_FIELDS)
    refuse_nul_in(data, ["name"])
    if role_of(actor) != ADMIN:
        raise ValidationError("Only administrators keep zone templates.")
    template = template or ZoneTemplate()
    before = audit.snapshot(template, TEMPLATE_FIELDS) if template.pk else {}
    for name, value in data.items():
        setattr(template, name, value)
    if not isinstance(template.records, list) or len(template.records) > 200:
        raise ValidationError({"records": "A list of at most 200 records."})
    sample = Zone(name=TEMPLATE_VARIABLES["zone"])
    try:
        render_template(template, sample, {k: v for k, v in TEMPLATE_VARIABLES.items()})
    except ValidationError as exc:
        raise ValidationError({"records": exc.messages}) from exc
    template.full_clean()
    with transaction.atomic():
        template.save()
        audit.record(
            "zone_template.save",
            template,
            actor=actor,
            changes=audit.diff(before, audit.snapshot(template, TEMPLATE_FIELDS)),
        )
    return template


def _parents(name: str) -> list[str]:
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels) - 1)]


def do_update_zone(zone: Zone, *, actor, data: dict) -> Zone:
    allowed = ZONE_SETTINGS + (["group", "owner"] if role_of(actor) == ADMIN else [])
    accept_only(data, allowed)
    refuse_nul_in(data, allowed)
    stored = Zone.objects.get(pk=zone.pk)
    before = audit.snapshot(stored, allowed)
    old_group_id = stored.group_id
    for name, value in data.items():
        setattr(stored, name, value)
    _check_zone_settings(stored)
    changes = audit.diff(before, audit.snapshot(stored, allowed))
    if not changes:
        return stored
    moved = "group" in changes
    with transaction.atomic():
        stored.serial = stored.next_serial()
        stored.status = Zone.Status.PENDING
        stored.save(update_fields=[*allowed, "serial", "status"])
        audit.record("zone.update", stored, actor=actor, changes=changes)
        events.changed(stored)
        if moved:
            # Moved to other nameservers: they get the whole zone, and the old group's
            # servers drop it (their desired state no longer holds it).
            publish_zone(stored, actor=actor)
            from dns.publishers import start_zone_removal

            start_zone_removal(stored, actor=actor, group_id=old_group_id)
        else:
            publish_zone(stored, actor=actor, units={stored.unit})
    return stored


def do_delete_zone(zone: Zone, *, actor) -> None:
    with transaction.atomic():
        audit.record("zone.delete", zone, actor=actor, changes={"name": [zone.name, None]})
        unpublish_zone(zone, actor=actor)
        zone.delete()


# -- records ------------------------------------------------------------------------------
def clean_record(zone: Zone, data: dict) -> dict:
    """The record's fields normalised (name relative, content canonical), or a
    ValidationError per field. Checks the record alone; ``check_at_name`` checks it beside
    the others."""
    errors: dict[str, list[str]] = {}
    out: dict = {}
    rdtype = data.get("type")
    if not isinstance(rdtype, str) or not rdtype:
        errors["type"] = ["Choose a record type."]
    else:
        out["type"] = rdtype.upper()
    try:
        name = data.get("name", "")
        if is_reverse(zone.name):
            name = reverse_record_name(name, zone.name)
        out["name"] = normalise_record_name(name, zone.name)
    except ValidationError as exc:
        errors["name"] = exc.messages
    ttl = data.get("ttl")
    try:
        validate_ttl(ttl)
        out["ttl"] = ttl
    except ValidationError as exc:
        errors["ttl"] = exc.messages
    if "type" in out:
        try:
            out["content"] = normalise_content(out["type"], data.get("content", ""), zone.name)
        except ValidationError as exc:
            errors["content" if "not a record type" not in str(exc) else "type"] = exc.messages
    if not errors:
        if out["type"] == "NS" and out["name"] == "@":
            errors["name"] = ["The zone's own NS records come from its nameserver group."]
        elif out["type"] == "CNAME" and out["name"] == "@":
            errors["type"] = ["The zone itself cannot be a CNAME (it has SOA and NS records)."]
        elif out["type"] == "DS" and out["name"] == "@":
            errors["type"] = ["DS records of the zone itself belong in the parent zone."]
        elif is_reverse(zone.name):
            errors.update(check_reverse_record(zone.name, out["name"], out["type"], out["content"]))
    if errors:
        raise ValidationError(errors)
    return out


def conflicts(name: str, rdtype: str, content: str, others: Iterable[tuple[str, str]]) -> dict:
    """Errors for one record against the (type, content) of the other records at its name."""
    others = list(others)
    if (rdtype, content) in others:
        return {"content": ["This record exists already."]}
    if rdtype == "CNAME" and others:
        kinds = ", ".join(sorted({t for t, _c in others}))
        return {"type": [f"{name} has other records ({kinds}): a CNAME cannot sit beside them."]}
    if rdtype != "CNAME" and any(t == "CNAME" for t, _c in others):
        return {"type": [f"{name} is a CNAME: it cannot have other records."]}
    return {}


def _check_at_name(zone: Zone, clean: dict, exclude: int | None = None) -> None:
    others = Record.objects.filter(zone=zone, name=clean["name"])
    if exclude is not None:
        others = others.exclude(pk=exclude)
    errors = conflicts(
        clean["name"], clean["type"], clean["content"], others.values_list("type", "content")
    )
    if errors:
        raise ValidationError(errors)


def _rrset_ttl(zone: Zone, record: Record) -> None:
    """A record set has one TTL: the record's siblings take the TTL it was given."""
    Record.objects.filter(zone=zone, name=record.name, type=record.type).exclude(
        pk=record.pk
    ).update(ttl=record.ttl)


def rrset_unit(zone: Zone, name: str, rdtype: str) -> str:
    return f"rrset:{zone.name}:{name}/{rdtype}"


def do_create_record(zone: Zone, *, actor, data: dict) -> Record:
    accept_only(data, RECORD_FIELDS)
    refuse_nul_in(data, RECORD_FIELDS)
    clean = clean_record(zone, data)
    with transaction.atomic():
        zone = Zone.objects.select_for_update().get(pk=zone.pk)
        if Record.objects.filter(zone=zone).count() >= MAX_RECORDS_PER_ZONE:
            raise ValidationError(f"A zone holds at most {MAX_RECORDS_PER_ZONE} records.")
        _check_at_name(zone, clean)
        record = _insert_record(zone, clean, actor)
        _changed(zone, actor, {rrset_unit(zone, record.name, record.type)})
    return record


def _insert_record(zone: Zone, clean: dict, actor) -> Record:
    """Store one cleaned record (checked at its name already), its record set's one TTL,
    and the audit entry; the caller publishes."""
    record = Record.objects.create(zone=zone, **clean)
    _rrset_ttl(zone, record)
    audit.record(
        "record.create",
        record,
        actor=actor,
        owner_id=zone.owner_id,
        changes={k: [None, audit.jsonable(v)] for k, v in clean.items()},
    )
    return record


def do_update_record(record: Record, *, actor, data: dict) -> Record:
    accept_only(data, RECORD_FIELDS)
    refuse_nul_in(data, RECORD_FIELDS)
    stored = Record.objects.select_related("zone").get(pk=record.pk)
    zone = stored.zone
    merged = {f: data.get(f, getattr(stored, f)) for f in RECORD_FIELDS}
    clean = clean_record(zone, merged)
    before = audit.snapshot(stored, RECORD_FIELDS)
    old_unit = rrset_unit(zone, stored.name, stored.type)
    with transaction.atomic():
        zone = Zone.objects.select_for_update().get(pk=zone.pk)
        _check_at_name(zone, clean, exclude=stored.pk)
        for name, value in clean.items():
            setattr(stored, name, value)
        changes = audit.diff(before, audit.snapshot(stored, RECORD_FIELDS))
        if not changes:
            return stored
        stored.save(update_fields=RECORD_FIELDS)
        _rrset_ttl(zone, stored)
        audit.record("record.update", stored, actor=actor, owner_id=zone.owner_id, changes=changes)
        _changed(zone, actor, {old_unit, rrset_unit(zone, stored.name, stored.type)})
    return stored


def do_delete_record(record: Record, *, actor) -> None:
    do_delete_records(record.zone, [record], actor=actor)


def do_delete_records(zone: Zone, records: Iterable[Record], *, actor) -> int:
    records = [r for r in records if r.zone_id == zone.pk]
    if not records:
        return 0
    with transaction.atomic():
        zone = Zone.objects.select_for_update().get(pk=zone.pk)
        units = {rrset_unit(zone, r.name, r.type) for r in records}
        for r in records[:100]:
            audit.record(
                "record.delete",
                r,
                actor=actor,
                owner_id=zone.owner_id,
                changes={"content": [f"{r.name} {r.type} {r.content}"[:300], None]},
            )
        if len(records) > 100:
            audit.record(
                "record.delete_many",
                zone,
                actor=actor,
                changes={"records": [len(records), 0]},
            )
        Record.objects.filter(pk__in=[r.pk for r in records]).delete()
        _changed(zone, actor, units)
    return len(records)


def _changed(zone: Zone, actor, units: set[str]) -> list:
    """The zone's data changed: a new serial, pending until its nameservers serve it.
    Returns the publish Operations."""
    zone.serial = zone.next_serial()
    zone.status = Zone.Status.PENDING
    Zone.objects.filter(pk=zone.pk).update(serial=zone.serial, status=zone.status)
    events.changed(zone)
    return publish_zone(zone, actor=actor, units=units)


# -- publishing ---------------------------------------------------------------------------
def publish_zone(zone: Zone, *, actor, units: set[str] | None = None) -> list:
    """Start a publish of ``units`` of the zone (all of it when None) on every nameserver
    of its group, one Operation per nameserver; nothing when it has no nameservers."""
    from dns.publishers import start_zone_publish

    return start_zone_publish(zone, actor=actor, units=units)


def do_check_ns(zone: Zone, *, actor):
    """Start an Operation verifying the zone's delegation now (dns/nscheck.py); the
    schedule does the same for every zone."""
    from core.operations import start_operation
    from core.policy import APPLY

    if zone.group_id is None:
        raise ValidationError("The zone has no nameservers to verify.")
    return start_operation(
        kind="dns.check",
        task="dns.tasks.check_ns",
        owner=zone.owner,
        requested_by=actor,
        target=zone,
        target_action=APPLY,
        args={"zone_id": zone.pk},
    )


def unpublish_zone(zone: Zone, *, actor) -> None:
    from dns.publishers import start_zone_removal

    start_zone_removal(zone, actor=actor)


# -- nameservers (administrators) ----------------------------------------------------------
def do_save_group(*, actor, data: dict, group: NameserverGroup | None = None) -> NameserverGroup:
    accept_only(data, GROUP_FIELDS)
    refuse_nul_in(data, GROUP_FIELDS)
    group = group or NameserverGroup()
    before = audit.snapshot(group, GROUP_FIELDS) if group.pk else {}
    for name, value in data.items():
        setattr(group, name, value)
    validate_plain_text(group.name)
    vanity = []
    for host in str(group.vanity_nameservers or "").split():
        try:
            vanity.append(normalise_zone_name(host))
        except ValidationError as exc:
            raise ValidationError({"vanity_nameservers": exc.messages}) from exc
    group.vanity_nameservers = "\n".join(dict.fromkeys(vanity))
    group.full_clean()
    with transaction.atomic():
        if group.is_default:
            NameserverGroup.objects.exclude(pk=group.pk).update(is_default=False)
        group.save()
        audit.record(
            "nameserver_group.save",
            group,
            actor=actor,
            changes=audit.diff(before, audit.snapshot(group, GROUP_FIELDS)),
        )
    return group


def do_save_nameserver(*, actor, data: dict, nameserver: Nameserver | None = None) -> Nameserver:
    accept_only(data, [*NAMESERVER_FIELDS, *NAMESERVER_SECRETS])
    refuse_nul_in(data, [*NAMESERVER_FIELDS, *NAMESERVER_SECRETS])
    ns = nameserver or Nameserver()
    before = audit.snapshot(ns, NAMESERVER_FIELDS) if ns.pk else {}
    for name, value in data.items():
        if name in NAMESERVER_SECRETS and not value:
            continue  # an empty secret field keeps the stored one
        setattr(ns, name, value)
    errors = {}
    try:
        ns.hostname = normalise_zone_name(ns.hostname)
    except ValidationError as exc:
        errors["hostname"] = exc.messages
    if ns.zone_dir and not re.fullmatch(r"/[A-Za-z0-9._/-]{0,299}", ns.zone_dir):
        errors["zone_dir"] = ["An absolute directory path (letters, digits, . _ - /)."]
    if ns.server_id is not None and ns.kind != Nameserver.Kind.BIND:
        errors["server"] = ["Only BIND is driven through a server's transport."]
    if ns.kind == Nameserver.Kind.BIND and not (ns.tsig_key_name and ns.tsig_secret):
        errors["tsig_key_name"] = ["BIND is updated with a TSIG key: give its name and secret."]
    if ns.api_url and not re.fullmatch(
        r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?", ns.api_url
    ):
        errors["api_url"] = ["An http:// or https:// address, such as http://127.0.0.1:8081."]
    elif ns.kind == Nameserver.Kind.POWERDNS and not (ns.api_url and ns.api_key):
        errors["api_url"] = ["PowerDNS is driven through its API: give its URL and key."]
    if errors:
        raise ValidationError(errors)
    ns.full_clean()
    with transaction.atomic():
        ns.save()
        audit.record(
            "nameserver.save",
            ns,
            actor=actor,
            changes=audit.diff(before, audit.snapshot(ns, NAMESERVER_FIELDS)),
        )
    return ns


# -- ACME DNS-01 (websites/certificates/dns01.py) ---------------------------------------------
ACME_CHALLENGE_TTL = 60


def zone_serving(name: str, *, user) -> Zone | None:
    """The zone the panel serves that holds ``name`` (its closest enclosing zone), when
    ``user`` may change it and it has nameservers; None otherwise."""
    from core.policy import CHANGE, restrict

    labels = name.rstrip(".").lower().split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    zones = {
        z.name: z
        for z in restrict(Zone, user, CHANGE)
        .filter(name__in=candidates, group__nameservers__isnull=False)
        .distinct()
    }
    return next((zones[c] for c in candidates if c in zones), None)


ADDRESS_TYPES = ("A", "AAAA", "CNAME")  # a name holding any of these already has an address


def do_add_site_records(*, actor, owner, names: list[str], addresses: list[str]) -> list[Record]:
    """A new website's A/AAAA records in its owner's zones: for each of ``names`` in a zone
    the panel serves and ``owner`` may change, one record per address of ``addresses``,
    unless the name already has an address (A, AAAA or CNAME: nothing is overwritten).
    One serial and one publish per zone; names in no such zone are left alone."""
    import ipaddress

    parsed = []
    for text in addresses:
        try:
            parsed.append(ipaddress.ip_address(text))
        except ValueError:
            continue  # a host name: no record can say it
    if not parsed:
        return []
    by_zone: dict[int, tuple[Zone, list[str]]] = {}
    for name in names:
        zone = zone_serving(name, user=owner)
        if zone is not None:
            by_zone.setdefault(zone.pk, (zone, []))[1].append(name)
    created: list[Record] = []
    for zone, zone_names in by_zone.values():
        rows = []
        for name in zone_names:
            label = "@" if name == zone.name else name[: -len(zone.name) - 1]
            if Record.objects.filter(zone=zone, name=label, type__in=ADDRESS_TYPES).exists():
                continue
            for addr in parsed:
                rdtype = "A" if addr.version == 4 else "AAAA"
                try:
                    rows.append(
                        clean_record(
                            zone, {"name": label, "type": rdtype, "ttl": None, "content": str(addr)}
                        )
                    )
                except ValidationError:
                    continue
        if not rows:
            continue
        with transaction.atomic():
            zone = Zone.objects.select_for_update().get(pk=zone.pk)
            made = []
            for clean in rows:
                try:
                    _check_at_name(zone, clean)
                except ValidationError:
                    continue
                made.append(_insert_record(zone, clean, actor))
            if made:
                _changed(zone, actor, {rrset_unit(zone, r.name, r.type) for r in made})
            created += made
    return created


def do_add_challenge_records(
    zone: Zone, *, actor, items: list[tuple[str, str]]
) -> tuple[list[Record], list]:
    """TXT records answering ACME DNS-01 challenges: ``items`` are (absolute name such as
    ``_acme-challenge.www.example.com``, validation text). One audit entry per record, one
    serial and one publish for all of them; returns the records and the publish Operations
    (the caller waits until every nameserver serves them, ``txt_not_served``)."""
    rows = []
    for name, value in items:
        clean = clean_record(
            zone,
            {"name": name + ".", "type": "TXT", "ttl": ACME_CHALLENGE_TTL, "content": f'"{value}"'},
        )
        rows.append(clean)
    with transaction.atomic():
        zone = Zone.objects.select_for_update().get(pk=zone.pk)
        created = []
        for clean in rows:
            _check_at_name(zone, clean)
            created.append(_insert_record(zone, clean, actor))
        ops = _changed(zone, actor, {rrset_unit(zone, r.name, r.type) for r in created})
    return created, ops


def txt_not_served(zone: Zone, items: list[tuple[str, str]]) -> list[str]:
    """Asks every nameserver of the zone's group directly (non-recursive) for each TXT of
    ``items`` (absolute name, text); what one does not serve yet, in words."""
    import dns.name
    from dns.providers import DnsError, adapter_for

    missing = []
    origin = dns.name.from_text(zone.name + ".")
    for ns in Nameserver.objects.filter(group_id=zone.group_id):
        adapter = adapter_for(ns)
        for name, value in items:
            relative = dns.name.from_text(name + ".").relativize(origin).to_text()
            try:
                rrset = adapter.query(zone.name, relative, "TXT")
            except DnsError as exc:
                missing.append(str(exc))
                continue
            texts = {b"".join(r.strings).decode() for r in rrset or ()}
            if value not in texts:
                missing.append(f"{adapter} does not serve the TXT record {name} yet")
    return missing


# -- DNSSEC (dns/signing.py) ------------------------------------------------------------------
DNSSEC_FIELDS = ["sign"]


def do_set_dnssec(zone: Zone, *, actor, data: dict) -> list:
    """Sign the zone (``{"sign": True}``) or serve it unsigned again: one Operation per
    nameserver of its group, under that nameserver's lock (no publish runs meanwhile).
    Asking again for the same state runs it again (and refreshes the DS records)."""
    from core.operations import start_operation
    from core.policy import APPLY

    accept_only(data, DNSSEC_FIELDS)
    sign = data.get("sign")
    if not isinstance(sign, bool):
        raise ValidationError({"sign": "true to sign the zone, false to unsign it."})
    nameservers = list(Nameserver.objects.filter(group_id=zone.group_id))
    if not nameservers:
        raise ValidationError({"sign": "The zone has no nameservers to sign it."})
    with transaction.atomic():
        stored = Zone.objects.select_for_update().get(pk=zone.pk)
        changes = {"dnssec": [stored.dnssec, sign]} if stored.dnssec != sign else {}
        stored.dnssec = sign
        if not sign:
            stored.ds_records = ""
        stored.save(update_fields=["dnssec", "ds_records"])
        audit.record("zone.dnssec", stored, actor=actor, changes=changes)
        return [
            start_operation(
                kind="dns.sign" if sign else "dns.unsign",
                task="dns.signing.sign_zone",
                owner=stored.owner,
                requested_by=actor,
                target=stored,
                target_action=APPLY,
                lock_key=ns.lock_key,
                args={"zone_id": stored.pk, "nameserver_id": ns.pk},
            )
            for ns in nameservers
        ]
