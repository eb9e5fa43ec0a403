"""State changes of customer databases. Each writes rows and its audit entry in one
transaction and starts the Operation (tasks.py) that makes the database server match.

Passwords are generated here, stored encrypted (a re-run after a fault sets the same one)
and handed back once to the caller, which shows them once.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import audit, events
from core.operations import start_operation
from core.policy import ADD, ADMIN, CHANGE, CUSTOMER, DELETE, RESELLER, may, restrict, role_of
from core.services import accept_only, refuse_nul_in
from websites.databases import naming, plan
from websites.databases.models import (
    CustomerDatabase,
    DatabaseGrant,
    DatabaseServer,
    DatabaseUser,
    Status,
)

DATABASE_SERVER_FIELDS = [
    "name",
    "engine",
    "server",
    "host",
    "port",
    "admin_user",
    "user_host",
    "accepts_new",
]
DATABASE_SERVER_SECRETS = ["admin_password"]
DATABASE_FIELDS = ["db_server", "name", "owner"]
USER_FIELDS = ["db_server", "name", "owner"]
GRANT_FIELDS = ["database", "user", "privileges"]
TASKS = "websites.databases.tasks"


def generate_password() -> str:
    """32 characters from [A-Za-z0-9_-]: 192 bits, fine in any client's config."""
    return secrets.token_urlsafe(24)


# ------------------------------------------------------------------ database servers


def _staff_only(actor) -> None:
    if actor is not None and role_of(actor) != ADMIN:
        raise PermissionDenied("Only administrators manage database servers.")


def do_create_database_server(*, actor, data: dict) -> DatabaseServer:
    _staff_only(actor)
    accept_only(data, DATABASE_SERVER_FIELDS + DATABASE_SERVER_SECRETS)
    db_server = DatabaseServer(**data)
    refuse_nul_in(db_server, DATABASE_SERVER_FIELDS + DATABASE_SERVER_SECRETS)
    db_server.full_clean()
    with transaction.atomic():
        db_server.save()
        audit.record(
            "database_server.create",
            db_server,
            actor=actor,
            changes=audit.diff({}, audit.snapshot(db_server, DATABASE_SERVER_FIELDS)),
        )
    return db_server


def do_update_database_server(db_server: DatabaseServer, *, actor, data: dict) -> DatabaseServer:
    _staff_only(actor)
    accept_only(data, DATABASE_SERVER_FIELDS + DATABASE_SERVER_SECRETS)
    stored = DatabaseServer.objects.get(pk=db_server.pk)
    before = audit.snapshot(stored, DATABASE_SERVER_FIELDS)
    secret_changed = False
    for name, value in data.items():
        if name in DATABASE_SERVER_SECRETS:
            if value:
                secret_changed = True
                db_server.admin_password = value
            continue
        if name == "engine" and value != stored.engine and stored.databases.exists():
            raise ValidationError({"engine": "It holds databases: the engine cannot change."})
        setattr(db_server, name, value)
    refuse_nul_in(db_server, DATABASE_SERVER_FIELDS + DATABASE_SERVER_SECRETS)
    db_server.full_clean()
    with transaction.atomic():
        db_server.save()
        changes = audit.diff(before, audit.snapshot(db_server, DATABASE_SERVER_FIELDS))
        if secret_changed:
            changes["admin_password"] = ["(hidden)", "(changed)"]
        if changes:
            audit.record("database_server.update", db_server, actor=actor, changes=changes)
    return db_server


def do_delete_database_server(db_server: DatabaseServer, *, actor) -> None:
    _staff_only(actor)
    if db_server.databases.exists() or db_server.users.exists():
        raise ValidationError(
            f"{db_server} still holds customer databases or users. Delete them first."
        )
    with transaction.atomic():
        audit.record("database_server.delete", db_server, actor=actor)
        db_server.delete()


def start_check_server(db_server: DatabaseServer, *, actor):
    _staff_only(actor)
    return start_operation(
        kind="database_server.check",
        task=f"{TASKS}.check_server",
        owner=actor,
        requested_by=actor,
        target=db_server,
        target_action=CHANGE,
        lock_key=db_server.lock_key,
        args={"db_server_id": db_server.pk},
    )


def servers_for(owner) -> QuerySet[DatabaseServer]:  # noqa: F821
    """Database servers offered for ``owner``'s new databases: standalone ones, those on
    administrators' servers, and those on the servers of the owner's reseller (or its own)."""
    qs = DatabaseServer.objects.filter(accepts_new=True)
    if owner is None or role_of(owner) == ADMIN:
        return qs
    allowed = Q(server__isnull=True) | Q(server__owner__role=ADMIN) | Q(server__owner=owner)
    if getattr(owner, "reseller_id", None):
        allowed |= Q(server__owner_id=owner.reseller_id)
    return qs.filter(allowed)


# ------------------------------------------------------------------------- helpers


def owners_for(actor):
    """Who ``actor`` may make databases for: itself, a reseller's customers, anyone (admin)."""
    User = get_user_model()
    role = role_of(actor)
    if role == ADMIN:
        return User.objects.filter(is_active=True, role__in=[ADMIN, RESELLER, CUSTOMER])
    if role == RESELLER:
        return User.objects.filter(Q(pk=actor.pk) | Q(reseller=actor), is_active=True)
    return User.objects.filter(pk=actor.pk)


def _owner(actor, data: dict):
    owner = data.pop("owner", None) or actor
    if actor is not None and not owners_for(actor).filter(pk=owner.pk).exists():
        raise ValidationError({"owner": "You cannot make databases for this user."})
    if not owner.account_name:
        raise ValidationError({"owner": "This user has no account name yet."})
    return owner


def _db_server(owner, value) -> DatabaseServer:
    if value is None:
        raise ValidationError({"db_server": "Choose a database server."})
    if not servers_for(owner).filter(pk=value.pk).exists():
        raise ValidationError({"db_server": "This database server takes no new databases."})
    return value


def _start(kind: str, task: str, *, actor, target, action: str, db_server, args: dict):
    return start_operation(
        kind=kind,
        task=f"{TASKS}.{task}",
        owner=target.owner,
        requested_by=actor,
        target=target,
        target_action=action,
        lock_key=db_server.lock_key,
        args=args,
    )


def _new_user(owner, db_server, suffix: str) -> tuple[DatabaseUser, str]:
    name = naming.full_name(owner.account_name, suffix, engine=db_server.engine, kind="user")
    if DatabaseUser.objects.filter(db_server=db_server, name=name).exists():
        raise ValidationError({"name": f"A database user {name} exists already."})
    password = generate_password()
    user = DatabaseUser(db_server=db_server, owner=owner, name=name, password=password)
    user.full_clean()
    return user, password


# ------------------------------------------------------------------------ databases


def do_create_database(
    *, actor, data: dict, with_user: bool = False
) -> tuple[CustomerDatabase, str | None]:
    """A database (pending) and, with ``with_user``, a user of the same name with all
    privileges on it, made on the server by one Operation. Returns the database and the
    new user's password (None without a user), to be shown once."""
    if actor is not None and not may(actor, ADD, CustomerDatabase):
        raise PermissionDenied("You may not create databases.")
    accept_only(data, DATABASE_FIELDS)
    data = dict(data)
    refuse_nul_in(data, ["name"])
    owner = _owner(actor, data)
    db_server = _db_server(owner, data.get("db_server"))
    suffix = data.get("name") or ""
    try:
        name = naming.full_name(
            owner.account_name, suffix, engine=db_server.engine, kind="database"
        )
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages}) from exc
    if CustomerDatabase.objects.filter(db_server=db_server, name=name).exists():
        raise ValidationError({"name": f"A database {name} exists already."})
    plan.check_plan(owner, actor=actor)
    database = CustomerDatabase(db_server=db_server, owner=owner, name=name)
    database.full_clean()
    user = password = None
    if with_user:
        try:
            user, password = _new_user(owner, db_server, suffix)
        except ValidationError as exc:
            raise ValidationError({"name": exc.messages}) from exc
    with transaction.atomic():
        database.save()
        audit.record(
            "database.create",
            database,
            actor=actor,
            changes=audit.diff({}, {"name": name, "db_server": str(db_server)}),
        )
        args = {"database_id": database.pk}
        if user is not None:
            user.save()
            grant = DatabaseGrant.objects.create(database=database, user=user)
            audit.record("database_user.create", user, actor=actor, changes={"name": [None, name]})
            audit.record(
                "database_grant.create",
                grant,
                actor=actor,
                owner_id=owner.pk,
                changes={"privileges": [None, grant.privileges]},
            )
            args.update(user_id=user.pk, grant_id=grant.pk)
        events.changed(database)
        _start(
            "database.create",
            "provision",
            actor=actor,
            target=database,
            action=CHANGE,
            db_server=db_server,
            args=args,
        )
    return database, password


def do_delete_database(database: CustomerDatabase, *, actor):
    """Revokes every grant on it, drops it on the server, then the row goes."""
    with transaction.atomic():
        database = CustomerDatabase.objects.select_for_update().get(pk=database.pk)
        database.status, database.status_message = Status.DELETING, ""
        database.save(update_fields=["status", "status_message"])
        audit.record("database.delete", database, actor=actor)
        events.changed(database)
        return _start(
            "database.delete",
            "drop_database",
            actor=actor,
            target=database,
            action=DELETE,
            db_server=database.db_server,
            args={"database_id": database.pk},
        )


# ---------------------------------------------------------------------------- users


def do_create_user(*, actor, data: dict, database: CustomerDatabase | None = None):
    """A database user (pending) with a generated password, optionally granted all
    privileges on ``database``. Returns (user, password, operation)."""
    if actor is not None and not may(actor, ADD, DatabaseUser):
        raise PermissionDenied("You may not create database users.")
    accept_only(data, USER_FIELDS)
    data = dict(data)
    refuse_nul_in(data, ["name"])
    owner = _owner(actor, data)
    db_server = data.get("db_server")
    if database is not None:
        db_server = database.db_server
        if database.owner_id != owner.pk:
            raise ValidationError({"database": "The database belongs to someone else."})
    db_server = _db_server(owner, db_server) if database is None else db_server
    try:
        user, password = _new_user(owner, db_server, data.get("name") or "")
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages}) from exc
    with transaction.atomic():
        user.save()
        audit.record("database_user.create", user, actor=actor, changes={"name": [None, user.name]})
        args = {"user_id": user.pk}
        if database is not None:
            grant = DatabaseGrant.objects.create(database=database, user=user)
            audit.record(
                "database_grant.create",
                grant,
                actor=actor,
                owner_id=owner.pk,
                changes={"privileges": [None, grant.privileges]},
            )
            args["grant_id"] = grant.pk
        events.changed(user)
        op = _start(
            "database_user.create",
            "provision",
            actor=actor,
            target=user,
            action=CHANGE,
            db_server=db_server,
            args=args,
        )
    return user, password, op


def do_rotate_password(user: DatabaseUser, *, actor):
    """A new generated password, set on the server by an Operation. Returns (password, op)."""
    if user.status == Status.DELETING:
        raise ValidationError("This user is being deleted.")
    password = generate_password()
    with transaction.atomic():
        user = DatabaseUser.objects.select_for_update().get(pk=user.pk)
        user.password = password
        user.password_changed_at = timezone.now()
        user.status, user.status_message = Status.PENDING, ""
        user.save(update_fields=["password", "password_changed_at", "status", "status_message"])
        audit.record(
            "database_user.rotate_password",
            user,
            actor=actor,
            changes={"password": ["(hidden)", "(changed)"]},
        )
        events.changed(user)
        op = _start(
            "database_user.rotate",
            "provision",
            actor=actor,
            target=user,
            action=CHANGE,
            db_server=user.db_server,
            args={"user_id": user.pk},
        )
    return password, op


def do_delete_user(user: DatabaseUser, *, actor):
    with transaction.atomic():
        user = DatabaseUser.objects.select_for_update().get(pk=user.pk)
        user.status, user.status_message = Status.DELETING, ""
        user.save(update_fields=["status", "status_message"])
        audit.record("database_user.delete", user, actor=actor)
        events.changed(user)
        return _start(
            "database_user.delete",
            "drop_user",
            actor=actor,
            target=user,
            action=DELETE,
            db_server=user.db_server,
            args={"user_id": user.pk},
        )


# --------------------------------------------------------------------------- grants


def do_grant(*, actor, data: dict) -> DatabaseGrant:
    """Give ``user`` ``privileges`` on ``database`` (same owner, same server); an existing
    grant changes its privileges."""
    accept_only(data, GRANT_FIELDS)
    database, user = data.get("database"), data.get("user")
    privileges = data.get("privileges") or DatabaseGrant.Privileges.ALL
    if database is None or user is None:
        raise ValidationError("Choose a database and a user.")
    if actor is not None:
        # The caller must be allowed to change both, whatever a serializer offered.
        if not restrict(CustomerDatabase, actor, CHANGE).filter(pk=database.pk).exists():
            raise ValidationError({"database": "Unknown database."})
        if not restrict(DatabaseUser, actor, CHANGE).filter(pk=user.pk).exists():
            raise ValidationError({"user": "Unknown database user."})
    if database.owner_id != user.owner_id:
        raise ValidationError({"user": "The user and the database belong to different owners."})
    if database.db_server_id != user.db_server_id:
        raise ValidationError({"user": "The user lives on another database server."})
    if Status.DELETING in (database.status, user.status):
        raise ValidationError("The database or the user is being deleted.")
    if privileges not in DatabaseGrant.Privileges.values:
        raise ValidationError({"privileges": "Choose all or read."})
    with transaction.atomic():
        grant, created = DatabaseGrant.objects.get_or_create(
            database=database, user=user, defaults={"privileges": privileges}
        )
        before = None if created else grant.privileges
        grant.privileges, grant.status, grant.status_message = privileges, Status.PENDING, ""
        grant.save()
        audit.record(
            "database_grant.create" if created else "database_grant.update",
            grant,
            actor=actor,
            owner_id=database.owner_id,
            changes={"privileges": [before, privileges]},
        )
        events.changed(database)
        _start(
            "database_grant.create",
            "provision",
            actor=actor,
            target=database,
            action=CHANGE,
            db_server=database.db_server,
            args={"grant_id": grant.pk},
        )
    return grant


def do_revoke(grant: DatabaseGrant, *, actor):
    with transaction.atomic():
        grant = DatabaseGrant.objects.select_for_update().get(pk=grant.pk)
        grant.status, grant.status_message = Status.DELETING, ""
        grant.save(update_fields=["status", "status_message"])
        audit.record("database_grant.delete", grant, actor=actor, owner_id=grant.database.owner_id)
        events.changed(grant.database)
        return _start(
            "database_grant.delete",
            "revoke",
            actor=actor,
            target=grant.database,
            action=CHANGE,
            db_server=grant.database.db_server,
            args={"grant_id": grant.pk},
        )
