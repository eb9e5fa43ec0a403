# ruff: noqa: F811 - the fixtures imported from test_databases are parameters here
"""A worker killed for real while it creates a customer database, its user and the grant, on
the real MariaDB and PostgreSQL: nothing says "active" (or stays "pending" forever) for what
may be half made; everything made on the server belongs to a row the panel shows; a retry
adopts what the dead worker made and finishes, and the new user logs in to its database."""

from __future__ import annotations

import pytest

from core.operations import retry_operation
from tests.integration.faults import die, run_in_doomed_worker
from tests.integration.test_databases import (  # noqa: F401 - fixtures
    Cleanup,
    _db_server,
    clean_maria,
    clean_pg,
    customer,
    maria_login,
    mariadb,
    pg_login,
    postgres,
)
from websites.databases import services
from websites.databases.adapters import adapter_for
from websites.databases.models import DatabaseGrant, DatabaseUser

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
@pytest.mark.parametrize("step", ["create_user", "grant"])
def test_worker_killed_mid_create(request, engine, step, monkeypatch, q_sync):
    """The worker dies as it reaches ``step`` (the database, and for "grant" the user too,
    exist on the server by then)."""
    ep = request.getfixturevalue("mariadb" if engine == "mariadb" else "postgres")
    cleanup: Cleanup = request.getfixturevalue("clean_maria" if engine == "mariadb" else "clean_pg")
    db_server = _db_server(engine, ep, f"{engine}-faults")
    owner = customer()
    queued = []
    with monkeypatch.context() as m:  # queued, not run: the doomed worker runs it
        m.setattr("core.operations._enqueue", queued.append)
        db, password = services.do_create_database(
            actor=owner, data={"db_server": db_server, "name": "shop"}, with_user=True
        )
    (op,) = queued
    cleanup.db(db.name)
    cleanup.user(db.name)

    def arm() -> None:
        from websites.databases import adapters

        cls = adapters.MariaDBAdapter if engine == "mariadb" else adapters.PostgresAdapter
        setattr(cls, step, lambda self, *args: die())

    run_in_doomed_worker(op, arm)
    assert op.state == "failed" and "stopped" in op.error
    adapter = adapter_for(db_server)
    assert adapter.database_exists(db.name)
    assert adapter.user_exists(db.name) == (step == "grant")
    user = DatabaseUser.objects.get(name=db.name)
    grant = DatabaseGrant.objects.get(database=db, user=user)
    for row in (db, user, grant):
        row.refresh_from_db()
        assert row.status == "failed" and "stopped" in row.status_message, (row, row.status)

    retry = retry_operation(op, actor=owner)
    retry.refresh_from_db()
    assert retry.state == "succeeded", retry.error
    for row in (db, user, grant):
        row.refresh_from_db()
        assert row.status == "active", (row, row.status_message)
    if engine == "mariadb":
        maria_login(db.name, password, db.name).close()
    else:
        pg_login(db.name, db.name).close()


@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
def test_worker_killed_mid_drop(request, engine, monkeypatch, q_sync):
    """The worker dies after revoking, before the database is dropped: the row says failed
    (not "deleting" forever); a retry drops it and the row goes."""
    from websites.databases.models import CustomerDatabase

    ep = request.getfixturevalue("mariadb" if engine == "mariadb" else "postgres")
    cleanup: Cleanup = request.getfixturevalue("clean_maria" if engine == "mariadb" else "clean_pg")
    db_server = _db_server(engine, ep, f"{engine}-faults-drop")
    owner = customer()
    db, _password = services.do_create_database(
        actor=owner, data={"db_server": db_server, "name": "old"}, with_user=True
    )
    cleanup.db(db.name)
    cleanup.user(db.name)
    db.refresh_from_db()
    assert db.status == "active", db.status_message
    queued = []
    with monkeypatch.context() as m:
        m.setattr("core.operations._enqueue", queued.append)
        services.do_delete_database(db, actor=owner)
    (op,) = queued

    def arm() -> None:
        from websites.databases import adapters

        cls = adapters.MariaDBAdapter if engine == "mariadb" else adapters.PostgresAdapter
        cls.drop_database = lambda self, *args: die()

    run_in_doomed_worker(op, arm)
    db.refresh_from_db()
    assert db.status == "failed" and "stopped" in db.status_message, db.status
    assert adapter_for(db_server).database_exists(db.name)

    retry = retry_operation(op, actor=owner)
    retry.refresh_from_db()
    assert retry.state == "succeeded", retry.error
    assert not CustomerDatabase.objects.filter(pk=db.pk).exists()
    assert not adapter_for(db_server).database_exists(db.name)
