"""Operation tasks: make a database server match the rows. Each step is idempotent, so a
retried operation finishes what a failed one began; a provision that fails part way undoes
what it created in that run (a user without its grant is dropped again) and marks each row
failed with the reason."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from core import events
from core.operations import WORKER_LOST, OperationError, on_worker_lost
from core.policy import is_staff
from websites.databases.adapters import DatabaseAdapterError, adapter_for
from websites.databases.models import (
    CustomerDatabase,
    DatabaseGrant,
    DatabaseServer,
    DatabaseUser,
    Status,
)

log = logging.getLogger(__name__)
UNREACHABLE = "The database server could not be reached; retry the operation later."


def _reason(exc: Exception, owner) -> str:
    if isinstance(exc, DatabaseAdapterError) and exc.retryable and not is_staff(owner):
        return UNREACHABLE
    return str(exc) or type(exc).__name__


def _set(row, status: str, message: str = "") -> None:
    type(row).objects.filter(pk=row.pk).update(status=status, status_message=message[:2000])
    row.status, row.status_message = status, message
    owner = row.database.owner if isinstance(row, DatabaseGrant) else row.owner
    target = row.database if isinstance(row, DatabaseGrant) else row
    events.changed(target, owner=owner)


def provision(ctx, database_id=None, user_id=None, grant_id=None) -> str:
    """Create the database, the user (or set its password) and the grant that are given."""
    database = CustomerDatabase.objects.filter(pk=database_id).first() if database_id else None
    user = DatabaseUser.objects.filter(pk=user_id).first() if user_id else None
    grant = (
        DatabaseGrant.objects.select_related("database", "user").filter(pk=grant_id).first()
        if grant_id
        else None
    )
    rows = [r for r in (database, user, grant) if r is not None]
    if not rows:
        return "Nothing left to do (deleted meanwhile)."
    db_server = (database or user or grant.database).db_server
    adapter = adapter_for(db_server)
    created: list[tuple[str, str]] = []  # what this run made, to undo on failure
    try:
        if database is not None:
            ctx.progress(10, f"Creating database {database.name}")
            existed = adapter.database_exists(database.name)
            adapter.create_database(database.name)
            if not existed:
                created.append(("database", database.name))
        if user is not None:
            ctx.progress(40, f"Creating user {user.name}")
            existed = adapter.user_exists(user.name)
            adapter.create_user(user.name, user.password)
            if not existed:
                created.append(("user", user.name))
        if grant is not None:
            ctx.progress(70, f"Granting {grant.privileges} on {grant.database.name}")
            adapter.grant(grant.database.name, grant.user.name, grant.privileges)
    except Exception as exc:
        reason = _reason(exc, rows[0].database.owner if rows[0] is grant else rows[0].owner)
        for kind, name in reversed(created):
            try:
                ctx.log(f"Undoing: dropping the {kind} {name} made by this run")
                if kind == "user":
                    adapter.drop_user(name, [database.name] if database else [])
                else:
                    adapter.drop_database(name)
            except DatabaseAdapterError as undo:
                ctx.log(f"Could not drop {name}: {undo}", "warning")
        for row in rows:
            _set(row, Status.FAILED, reason)
        raise
    for row in rows:
        _set(row, Status.ACTIVE)
    if database is not None:
        _refresh(db_server, [database])
    return "Done"


def _provision_worker_lost(op, database_id=None, user_id=None, grant_id=None) -> None:
    """The worker died part way: whatever it made on the server belongs to these rows (a
    retry adopts it, each step being idempotent); none of them may stay "pending"."""
    for model, pk in ((CustomerDatabase, database_id), (DatabaseUser, user_id)):
        if pk:
            model.objects.filter(pk=pk, status=Status.PENDING).update(
                status=Status.FAILED, status_message=WORKER_LOST
            )
    if grant_id:
        DatabaseGrant.objects.filter(pk=grant_id, status=Status.PENDING).update(
            status=Status.FAILED, status_message=WORKER_LOST
        )


on_worker_lost(provision, _provision_worker_lost)


def _drop_worker_lost(model):
    """A drop whose worker died: the row is failed, as a drop that failed would be (whether
    the server still has the thing is for the retry to find out; dropping is idempotent)."""

    def lost(op, **args) -> None:
        pk = next(iter(args.values()))
        model.objects.filter(pk=pk, status=Status.DELETING).update(
            status=Status.FAILED, status_message=WORKER_LOST
        )

    return lost


def drop_database(ctx, database_id) -> str:
    database = CustomerDatabase.objects.select_related("db_server").filter(pk=database_id).first()
    if database is None:
        return "Already gone."
    adapter = adapter_for(database.db_server)
    try:
        # MariaDB keeps grants on a dropped database's name: a later database of the same
        # name would open to them again. Revoke first.
        for grant in database.grants.select_related("user"):
            ctx.log(f"Revoking {grant.user.name}")
            adapter.revoke(database.name, grant.user.name)
        ctx.progress(50, f"Dropping {database.name}")
        adapter.drop_database(database.name)
    except Exception as exc:
        _set(database, Status.FAILED, _reason(exc, database.owner))
        raise
    with transaction.atomic():
        events.changed(database)
        database.delete()
    return f"Dropped {database.name}"


on_worker_lost(drop_database, _drop_worker_lost(CustomerDatabase))


def drop_user(ctx, user_id) -> str:
    user = DatabaseUser.objects.select_related("db_server").filter(pk=user_id).first()
    if user is None:
        return "Already gone."
    adapter = adapter_for(user.db_server)
    databases = list(
        CustomerDatabase.objects.filter(db_server=user.db_server, owner=user.owner).values_list(
            "name", flat=True
        )
    )
    try:
        ctx.progress(30, f"Dropping {user.name}")
        adapter.drop_user(user.name, databases)
    except Exception as exc:
        _set(user, Status.FAILED, _reason(exc, user.owner))
        raise
    with transaction.atomic():
        events.changed(user)
        user.delete()
    return f"Dropped {user.name}"


on_worker_lost(drop_user, _drop_worker_lost(DatabaseUser))


def revoke(ctx, grant_id) -> str:
    grant = DatabaseGrant.objects.select_related("database", "user").filter(pk=grant_id).first()
    if grant is None:
        return "Already gone."
    adapter = adapter_for(grant.database.db_server)
    try:
        adapter.revoke(grant.database.name, grant.user.name)
    except Exception as exc:
        _set(grant, Status.FAILED, _reason(exc, grant.database.owner))
        raise
    with transaction.atomic():
        events.changed(grant.database)
        grant.delete()
    return f"Revoked {grant.user.name} on {grant.database.name}"


on_worker_lost(revoke, _drop_worker_lost(DatabaseGrant))


def check_server(ctx, db_server_id) -> str:
    db_server = DatabaseServer.objects.get(pk=db_server_id)
    try:
        version = adapter_for(db_server).check()
    except DatabaseAdapterError as exc:
        DatabaseServer.objects.filter(pk=db_server.pk).update(last_error=str(exc)[:2000])
        raise OperationError(str(exc)) from exc
    DatabaseServer.objects.filter(pk=db_server.pk).update(last_error="")
    return f"Connected: {db_server.get_engine_display()} {version}"


def _refresh(db_server, databases) -> int:
    names = [d.name for d in databases]
    sizes = adapter_for(db_server).sizes(names)
    now = timezone.now()
    for database in databases:
        if database.name in sizes:
            CustomerDatabase.objects.filter(pk=database.pk).update(
                size_bytes=sizes[database.name], size_at=now
            )
    return len(sizes)


def refresh_sizes() -> str:
    """Scheduled (hourly): each active database's size, one query per database server."""
    done = failed = 0
    for db_server in DatabaseServer.objects.all():
        databases = list(db_server.databases.filter(status=Status.ACTIVE))
        if not databases:
            continue
        try:
            done += _refresh(db_server, databases)
        except DatabaseAdapterError as exc:
            failed += 1
            log.warning("sizes of %s: %s", db_server, exc)
            DatabaseServer.objects.filter(pk=db_server.pk).update(last_error=str(exc)[:2000])
    return f"{done} sizes refreshed, {failed} servers failed"
