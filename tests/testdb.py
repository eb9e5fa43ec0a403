"""One migrated test database per run, copied by every parallel worker.

Migrating the test database from scratch costs each xdist worker 5-20 s of CPU (more on
PostgreSQL), all of them at the start of the run on the same CPUs. The first worker to need
a database migrates its own and publishes a copy (a file for SQLite, a template database for
PostgreSQL); the others, waiting on a lock meanwhile, copy it and let Django keep it
(``keepdb``: the migrations then find nothing to apply). A worker whose copy fails, or that
finds no copy because the first one failed, migrates as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

POSTGRESQL = "django.db.backends.postgresql"


class Template:
    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir  # shared by the run's workers; None without xdist
        self.lock: IO | None = None  # held by the worker that migrates for the others
        self.copied = False

    def prepare(self, db: dict) -> None:
        """Before Django sets up the test database: copy the run's template into it, or
        (the first worker) take the lock and migrate as usual, publishing afterwards."""
        if self.run_dir is None:
            return
        lock = open(self.run_dir / "test-database.lock", "w")  # noqa: SIM115 - held across fixtures
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (self.run_dir / "test-database.ready").exists():
            try:
                self._copy_into(db)
                self.copied = True
            finally:
                lock.close()
            return
        self.lock = lock

    def publish(self, db: dict) -> None:
        """After this worker migrated its test database: a copy for the others."""
        if self.lock is None:
            return
        try:
            from django.db import connections

            connections.close_all()  # PostgreSQL copies only a database nobody is connected to
            if db["ENGINE"] == POSTGRESQL:
                _pg(db, f'DROP DATABASE IF EXISTS "{_template_name(db)}"')
                _pg(db, f'CREATE DATABASE "{_template_name(db)}" TEMPLATE "{db["NAME"]}"')
            else:
                _sqlite_copy(db["NAME"], self.run_dir / "test-database.sqlite3")
            (self.run_dir / "test-database.ready").touch()
        finally:
            self.lock.close()
            self.lock = None

    def drop_copy(self, db: dict) -> None:
        """At the end: the copied database goes (Django keeps what ``keepdb`` set up)."""
        if not self.copied:
            return
        if db["ENGINE"] == POSTGRESQL:
            from django.db import connections

            connections.close_all()
            _pg(db, f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        else:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{db['NAME']}{suffix}")

    def _copy_into(self, db: dict) -> None:
        name = db["TEST"]["NAME"]
        if db["ENGINE"] == POSTGRESQL:
            _pg(db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            _pg(db, f'CREATE DATABASE "{name}" TEMPLATE "{_template_name(db)}"')
        else:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{name}{suffix}")
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            _sqlite_copy(self.run_dir / "test-database.sqlite3", name)


def _template_name(db: dict) -> str:
    # The workers' names end in _gw<N>: the template is the name without it.
    return db["TEST"]["NAME"].rsplit("_", 1)[0] + "_template"


def _pg(db: dict, sql: str) -> None:
    import psycopg

    params = {
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": "postgres",
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as conn:
        conn.execute(sql)


def _sqlite_copy(source, target) -> None:
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def flush_by_delete() -> None:
    """Transactional tests empty every table after each test (Django's flush): on PostgreSQL
    with DELETE rather than TRUNCATE, which makes new files for each of the 100-odd tables
    and their indexes (about 4 s a test under CI's load; DELETE of the few rows a test
    leaves, 0.1 s). Foreign keys are deferrable, checked at the flush's commit. Flushes that
    reset sequences or cascade to tables outside the list keep TRUNCATE."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade or not tables:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return ["SET CONSTRAINTS ALL DEFERRED"] + [
            f"DELETE FROM {self.quote_name(table)}" for table in tables
        ]

    DatabaseOperations.sql_flush = sql_flush
