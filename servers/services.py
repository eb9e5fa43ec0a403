"""State changes of servers. Each writes rows and its audit entry in one transaction, and
starts the Operation that makes the server match.

The field lists here are the only place that says what a caller may write: forms,
serializers and the admin all take their fields from them.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction

from core import audit, events
from core.operations import start_operation
from core.policy import ADD, ADMIN, APPLY, may, role_of
from core.services import accept_only, refuse_nul_in
from servers import connection
from servers.addresses import check_server_address
from servers.engine import registry, validate_overrides
from servers.engine.publisher import marks_of
from servers.engine.state import mark_dirty
from servers.firewall import FirewallFiles, check_lockout
from servers.models import FirewallRule, Server
from servers.transport import generate_keypair, public_key_of

# What a caller may write on a server, and the write-only secrets beside them.
SERVER_FIELDS = [
    "name",
    "address",
    "ssh_port",
    "ssh_user",
    "transport",
    "kind",
    "location",
    "status",
    "owner",
    "notes",
    "auth_method",
    "profile",
]
SERVER_SECRETS = ["private_key", "password"]
FIREWALL_UNIT = FirewallFiles.UNIT
RULE_FIELDS = ["position", "action", "protocol", "port", "port_end", "source", "comment"]


def _check_transport(actor, server: Server) -> None:
    # "Local" runs commands and writes files on the panel's own host: administrators only.
    # Checked by every service function, not only on edit (the policy hides such servers
    # from non-administrators' actions too).
    if server.transport == Server.Transport.LOCAL and actor is not None and role_of(actor) != ADMIN:
        raise ValidationError(
            {"transport": "Only administrators may manage the panel's own host (local transport)."}
        )


def _check_owner(actor, server: Server, before_owner_id: int | None) -> None:
    """Non-administrators own the servers they add, and cannot hand them to anyone else."""
    if actor is None or role_of(actor) == ADMIN:
        return
    wanted = before_owner_id if before_owner_id is not None else actor.pk
    if server.owner_id != wanted:
        raise ValidationError({"owner": "You can only own servers yourself."})


def _set_private_key(server: Server, private_key: str) -> None:
    try:
        server.public_key = public_key_of(private_key)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's input
        raise ValidationError({"private_key": str(exc)}) from exc
    server.private_key = private_key


def _validate(actor, server: Server, *, address_changed: bool) -> None:
    refuse_nul_in(server, [*SERVER_FIELDS, "profile"])
    try:
        validate_overrides(server.profile or {})
    except ValidationError as exc:
        raise ValidationError({"profile": exc.messages}) from exc
    _check_transport(actor, server)
    if address_changed:
        check_server_address(actor, server.address)
    server.full_clean()


def do_create_server(*, actor, data: dict) -> Server:
    if actor is not None and not may(actor, ADD, Server):
        raise PermissionDenied("Only administrators and resellers add servers.")
    accept_only(data, SERVER_FIELDS + SERVER_SECRETS)
    data = dict(data)
    private_key = data.pop("private_key", "") or ""
    if actor is not None and data.get("owner") is None:
        data["owner"] = actor
    server = Server(**data)
    if server.auth_method == Server.Auth.KEY:
        if private_key:
            _set_private_key(server, private_key)
        else:
            server.private_key, server.public_key = generate_keypair(f"hosting-panel@{server.name}")
    _check_owner(actor, server, None)
    _validate(actor, server, address_changed=True)
    with transaction.atomic():
        server.save()
        audit.record(
            "server.create",
            server,
            actor=actor,
            changes=audit.diff({}, audit.snapshot(server, SERVER_FIELDS)),
        )
        events.changed(server)  # open server lists show it
    return server


def do_update_server(server: Server, *, actor, data: dict) -> Server:
    accept_only(data, SERVER_FIELDS + SERVER_SECRETS)
    # From the database: a bound ModelForm has already written new values onto ``server``.
    stored = Server.objects.get(pk=server.pk)
    before = audit.snapshot(stored, SERVER_FIELDS)
    _check_transport(actor, stored)
    secrets_changed = False
    for name, value in data.items():
        if name in SERVER_SECRETS:
            if value:
                secrets_changed = True
                if name == "private_key":
                    _set_private_key(server, value)
                else:
                    server.password = value
            continue
        setattr(server, name, value)
    _check_owner(actor, server, stored.owner_id)
    moved = (server.address, server.ssh_port) != (stored.address, stored.ssh_port)
    _validate(actor, server, address_changed=moved)
    with transaction.atomic():
        server.save()
        changes = audit.diff(before, audit.snapshot(server, SERVER_FIELDS))
        if secrets_changed:
            changes["credentials"] = ["(hidden)", "(changed)"]
        if changes:
            audit.record("server.update", server, actor=actor, changes=changes)
        events.changed(server)
    connection.forget(server)
    return server


def dependants(server: Server) -> dict[str, list[str]]:
    """Objects that still live on the server (anything protecting it from deletion)."""
    found: dict[str, list[str]] = {}
    for rel in server._meta.related_objects:
        if rel.on_delete is not models.PROTECT:
            continue
        # A one-to-one (a hypervisor on the server) is one row, not a manager.
        rows = rel.related_model._default_manager.filter(**{rel.field.name: server})
        items = [str(o) for o in rows[:20]]
        if items:
            found[str(rel.related_model._meta.verbose_name_plural)] = items
    return found


def do_delete_server(server: Server, *, actor) -> None:
    _check_transport(actor, server)
    remaining = dependants(server)
    if remaining:
        listing = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in remaining.items())
        raise ValidationError(f"{server.name} still has {listing}. Move or delete them first.")
    with transaction.atomic():
        audit.record("server.delete", server, actor=actor)
        events.changed(server)  # its row leaves open lists
        server.delete()
    connection.forget(server)


def do_accept_host_key(server: Server, *, actor) -> Server:
    if not server.pending_host_key:
        raise ValidationError("No new host key is waiting to be accepted.")
    with transaction.atomic():
        old, new = server.host_key, server.pending_host_key
        server.host_key, server.pending_host_key, server.last_error = new, "", ""
        server.save(update_fields=["host_key", "pending_host_key", "last_error"])
        audit.record(
            "server.accept_host_key",
            server,
            actor=actor,
            changes={
                "host_key": [server.host_key_fingerprint(old), server.host_key_fingerprint(new)]
            },
        )
    connection.forget(server)
    return server


def do_save_rule(
    server: Server, *, actor, data: dict, rule: FirewallRule | None = None
) -> FirewallRule:
    accept_only(data, RULE_FIELDS)
    _check_transport(actor, server)
    creating = rule is None
    rule = rule or FirewallRule(server=server)
    before = {} if creating else audit.snapshot(FirewallRule.objects.get(pk=rule.pk), RULE_FIELDS)
    for name, value in data.items():
        setattr(rule, name, value)
    refuse_nul_in(rule, RULE_FIELDS)
    rule.full_clean()
    others = [r for r in server.firewall_rules.all() if r.pk != rule.pk]
    check_lockout(server, [*others, rule])
    with transaction.atomic():
        rule.save()
        audit.record(
            f"firewall.{'create' if creating else 'update'}",
            rule,
            actor=actor,
            owner_id=server.owner_id,
            changes=audit.diff(before, audit.snapshot(rule, RULE_FIELDS)),
        )
        start_apply(server, actor=actor, units={FIREWALL_UNIT})
    return rule


def do_delete_rule(rule: FirewallRule, *, actor) -> None:
    server = rule.server
    _check_transport(actor, server)
    others = [r for r in server.firewall_rules.all() if r.pk != rule.pk]
    check_lockout(server, others)
    with transaction.atomic():
        audit.record("firewall.delete", rule, actor=actor, owner_id=server.owner_id)
        rule.delete()
        start_apply(server, actor=actor, units={FIREWALL_UNIT})


def _start(kind: str, task: str, server: Server, actor, args: dict | None = None):
    _check_transport(actor, server)
    return start_operation(
        kind=kind,
        task=task,
        owner=server.owner,
        requested_by=actor,
        target=server,
        target_action=APPLY,
        lock_key=server.lock_key,
        args={"server_id": server.pk, **(args or {})},
    )


def start_test_connection(server, *, actor):
    return _start("server.test_connection", "servers.tasks.test_connection", server, actor)


def start_gather_facts(server, *, actor):
    return _start("server.gather_facts", "servers.tasks.gather_facts", server, actor)


def start_apply(server, *, actor, units: set[str] | None = None, check_server: bool = False):
    """Apply ``units`` (every unit when None: a full render) as an Operation. The units are
    recorded as dirty first, so a failed or lost operation leaves them to the next apply."""
    mark_dirty(server, units)
    return _start(
        "server.apply",
        "servers.tasks.apply_server",
        server,
        actor,
        {"check_server": True} if check_server else None,
    )


def do_prepare_server(server: Server, *, actor, data: dict):
    """Install nginx and the PHP versions asked for, write the include lines, record the
    components (servers/prepare.py), as an audited Operation on the server."""
    from servers.prepare import clean_php_versions

    accept_only(data, ["php_versions"])
    versions = clean_php_versions(data.get("php_versions"))
    with transaction.atomic():
        audit.record(
            "server.prepare",
            server,
            actor=actor,
            owner_id=server.owner_id,
            changes={"php_versions": versions},
        )
        return _start(
            "server.prepare",
            "servers.prepare.prepare_server",
            server,
            actor,
            {"php_versions": versions},
        )


def start_refresh_bans(server: Server, *, actor):
    return _start("server.bans", "servers.fail2ban.refresh_bans", server, actor)


def do_unban(server: Server, *, actor, data: dict):
    """Lift one fail2ban ban (jail and address validated) as an audited Operation."""
    from servers.fail2ban import clean_unban

    accept_only(data, ["jail", "address"])
    jail, address = clean_unban(data)
    with transaction.atomic():
        audit.record(
            "server.unban",
            server,
            actor=actor,
            owner_id=server.owner_id,
            changes={"jail": jail, "address": address},
        )
        return _start(
            "server.unban",
            "servers.fail2ban.unban",
            server,
            actor,
            {"jail": jail, "address": address},
        )


def start_drift_check(server, *, actor):
    return _start("server.drift_check", "servers.tasks.detect_drift", server, actor)


def start_publish(
    publisher: str,
    key: str,
    *,
    actor,
    owner,
    units: set[str] | None = None,
    shown_on: models.Model | None = None,
    kind: str = "publish",
):
    """Publish ``units`` (every unit when None) to ``publisher``'s target ``key`` as an
    Operation, under the target's lock key. The units are recorded as dirty first, so a
    failed or lost operation leaves them to the next publish. The caller has checked that
    ``actor`` may change them; ``shown_on`` is the model the operation shows on (a zone)."""
    found = registry.publisher(publisher)
    lock_key = found.lock_key(found.target(key))
    mark_dirty(marks_of(found, key), units)
    return start_operation(
        kind=kind,
        task="servers.tasks.publish",
        owner=owner,
        requested_by=actor,
        target=shown_on,
        target_action=APPLY if shown_on is not None else "",
        lock_key=lock_key,
        args={"publisher": publisher, "target": key},
    )
