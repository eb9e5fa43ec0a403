"""One adapter per database engine: create/drop databases and users, grants, passwords,
sizes. Every call is idempotent (a create that finds the thing finishes it; a drop of
something absent is done), so an Operation that failed half way can simply run again.

Names have passed ``naming.validate_full_name`` before they get here, and are quoted by
the driver anyway: ``psycopg.sql.Identifier`` for PostgreSQL; for MariaDB, user names and
passwords are bound parameters (string literals) and database names go through
``quote_db`` (backticks, doubled) with LIKE wildcards escaped where MariaDB matches them
(GRANT ... ON `db`.*). Nothing is string-built from input.

Errors: ``DatabaseAdapterError`` with ``retryable`` (the server did not answer, a lock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from websites.databases.naming import FULL_NAME, MARIADB, POSTGRESQL

CONNECT_TIMEOUT = 10


class DatabaseAdapterError(Exception):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Endpoint:
    engine: str
    host: str
    port: int
    admin_user: str
    admin_password: str
    user_host: str = "%"


def _checked(name: str) -> str:
    if not FULL_NAME.fullmatch(name or ""):
        raise DatabaseAdapterError(f"refusing the name {name!r}")
    return name


def endpoint_of(db_server) -> Endpoint:
    return Endpoint(
        engine=db_server.engine,
        host=db_server.address,
        port=db_server.port,
        admin_user=db_server.admin_user,
        admin_password=db_server.admin_password or "",
        user_host=db_server.user_host or "%",
    )


def adapter_for(db_server_or_endpoint):
    ep = (
        db_server_or_endpoint
        if isinstance(db_server_or_endpoint, Endpoint)
        else endpoint_of(db_server_or_endpoint)
    )
    if ep.engine == MARIADB:
        return MariaDBAdapter(ep)
    if ep.engine == POSTGRESQL:
        return PostgresAdapter(ep)
    raise DatabaseAdapterError(f"unknown engine {ep.engine!r}")


# ---------------------------------------------------------------------------- MariaDB


def quote_db(name: str) -> str:
    """A MariaDB database identifier: backticks, any backtick doubled."""
    return "`" + _checked(name).replace("`", "``") + "`"


def grant_pattern(name: str) -> str:
    """``db`` in ``GRANT ... ON `db`.*`` is a LIKE pattern: ``_`` would match any character
    (``acme_db`` would also grant ``acmexdb``), so escape it."""
    return "`" + re.sub(r"([_%\\])", r"\\\1", _checked(name)).replace("`", "``") + "`"


MARIADB_RETRYABLE = {1040, 1205, 1213, 2003, 2006, 2013}  # too many conn., locks, gone away


class MariaDBAdapter:
    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep

    def _connect(self, **extra):
        import pymysql

        try:
            return pymysql.connect(
                host=self.ep.host,
                port=self.ep.port,
                user=self.ep.admin_user,
                password=self.ep.admin_password,
                connect_timeout=CONNECT_TIMEOUT,
                autocommit=True,
                charset="utf8mb4",
                **extra,
            )
        except pymysql.MySQLError as exc:
            raise self._error(exc) from exc

    def _error(self, exc) -> DatabaseAdapterError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        return DatabaseAdapterError(f"MariaDB: {text}", retryable=code in MARIADB_RETRYABLE)

    def _run(self, statements: list[tuple[str, tuple]], *, ignore: set[int] = frozenset()):
        import pymysql

        conn = self._connect()
        try:
            rows = ()
            with conn.cursor() as cur:
                for sql, params in statements:
                    try:
                        cur.execute(sql, params or None)
                    except pymysql.MySQLError as exc:
                        if exc.args and exc.args[0] in ignore:
                            continue
                        raise self._error(exc) from exc
                    rows = cur.fetchall()
            return rows
        finally:
            conn.close()

    def check(self) -> str:
        rows = self._run([("SELECT VERSION()", ())])
        return str(rows[0][0])

    def create_database(self, name: str) -> None:
        self._run([(f"CREATE DATABASE IF NOT EXISTS {quote_db(name)} CHARACTER SET utf8mb4", ())])

    def drop_database(self, name: str) -> None:
        self._run([(f"DROP DATABASE IF EXISTS {quote_db(name)}", ())])

    def database_exists(self, name: str) -> bool:
        rows = self._run(
            [("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))]
        )
        return bool(rows)

    def user_exists(self, name: str) -> bool:
        rows = self._run(
            [
                (
                    "SELECT 1 FROM mysql.user WHERE user = %s AND host = %s",
                    (_checked(name), self.ep.user_host),
                )
            ]
        )
        return bool(rows)

    def create_user(self, name: str, password: str) -> None:
        """Create the user, or set its password if it exists (a re-run finishes)."""
        who = (_checked(name), self.ep.user_host)
        self._run(
            [
                ("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (*who, password)),
                ("ALTER USER %s@%s IDENTIFIED BY %s", (*who, password)),
            ]
        )

    set_password = create_user

    def drop_user(self, name: str, databases: list[str] = ()) -> None:
        self._run([("DROP USER IF EXISTS %s@%s", (_checked(name), self.ep.user_host))])

    def grant(self, database: str, user: str, privileges: str) -> None:
        what = "ALL PRIVILEGES" if privileges == "all" else "SELECT, SHOW VIEW"
        who = (_checked(user), self.ep.user_host)
        target = f"{grant_pattern(database)}.*"
        # A change of privileges replaces the old set: revoke first (absent grant: 1141).
        self._run(
            [
                (f"REVOKE ALL PRIVILEGES ON {target} FROM %s@%s", who),
                (f"GRANT {what} ON {target} TO %s@%s", who),
            ],
            ignore={1141, 1147},
        )

    def revoke(self, database: str, user: str) -> None:
        who = (_checked(user), self.ep.user_host)
        target = f"{grant_pattern(database)}.*"
        # 1141/1147: no such grant; 1133: no such user. Both mean: already revoked.
        self._run(
            [(f"REVOKE ALL PRIVILEGES ON {target} FROM %s@%s", who)], ignore={1141, 1147, 1133}
        )

    def sizes(self, names: list[str]) -> dict[str, int]:
        if not names:
            return {}
        rows = self._run(
            [
                (
                    "SELECT s.schema_name, COALESCE(SUM(t.data_length + t.index_length), 0) "
                    "FROM information_schema.schemata s LEFT JOIN information_schema.tables t "
                    "ON t.table_schema = s.schema_name GROUP BY s.schema_name",
                    (),
                )
            ]
        )
        wanted = set(names)
        return {name: int(size) for name, size in rows if name in wanted}


# ------------------------------------------------------------------------- PostgreSQL

PG_RETRYABLE_CLASSES = ("08", "40", "53", "55", "57")  # connection, rollback, resources, locks


class PostgresAdapter:
    """Databases are owned by the administrative login; CONNECT and TEMPORARY are revoked
    from PUBLIC on each new database, so a role reaches only databases it was granted."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep

    def _connect(self, dbname: str = "postgres"):
        import psycopg

        try:
            return psycopg.connect(
                host=self.ep.host,
                port=self.ep.port,
                user=self.ep.admin_user,
                password=self.ep.admin_password or None,
                dbname=dbname,
                connect_timeout=CONNECT_TIMEOUT,
                autocommit=True,
            )
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc) -> DatabaseAdapterError:
        state = getattr(exc, "sqlstate", None) or ""
        retryable = state[:2] in PG_RETRYABLE_CLASSES or not state
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DatabaseAdapterError(f"PostgreSQL: {text}", retryable=retryable)

    def _run(self, statements, *, dbname: str = "postgres", fetch: bool = False):
        import psycopg

        conn = self._connect(dbname)
        try:
            with conn.cursor() as cur:
                rows = None
                for statement, params in statements:
                    try:
                        cur.execute(statement, params or None)
                    except psycopg.Error as exc:
                        raise self._error(exc) from exc
                    if fetch and cur.description is not None:
                        rows = cur.fetchall()
                return rows
        finally:
            conn.close()

    def _exists(self, query: str, name: str) -> bool:
        return bool(self._run([(query, (name,))], fetch=True))

    def check(self) -> str:
        return str(self._run([("SHOW server_version", ())], fetch=True)[0][0])

    def database_exists(self, name: str) -> bool:
        return self._exists("SELECT 1 FROM pg_database WHERE datname = %s", _checked(name))

    def user_exists(self, name: str) -> bool:
        return self._exists("SELECT 1 FROM pg_roles WHERE rolname = %s", _checked(name))

    def create_database(self, name: str) -> None:
        from psycopg import sql

        db = sql.Identifier(_checked(name))
        if not self.database_exists(name):
            self._run(
                [(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(db), ())]
            )
        # Also on a re-run: the database is private until granted.
        self._run([(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db), ())])
        self._run([(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"), ())], dbname=name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        db = sql.Identifier(_checked(name))
        self._run([(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db), ())])

    def create_user(self, name: str, password: str) -> None:
        from psycopg import sql

        role, secret = sql.Identifier(_checked(name)), sql.Literal(password)
        verb = "ALTER" if self.user_exists(name) else "CREATE"
        self._run(
            [
                (
                    sql.SQL(
                        verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
                    ).format(role, secret),
                    (),
                )
            ]
        )

    set_password = create_user

    def drop_user(self, name: str, databases: list[str] = ()) -> None:
        """Hand what the role owns in ``databases`` to the administrative login (the
        customer's tables stay), drop its privileges there, then the role."""
        from psycopg import sql

        if not self.user_exists(name):
            return
        role = sql.Identifier(_checked(name))
        for database in databases:
            if not self.database_exists(database):
                continue
            self._run(
                [
                    (sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role), ()),
                    (sql.SQL("DROP OWNED BY {}").format(role), ()),
                ],
                dbname=_checked(database),
            )
        self._run(
            [
                (sql.SQL("DROP OWNED BY {}").format(role), ()),
                (sql.SQL("DROP ROLE IF EXISTS {}").format(role), ()),
            ]
        )

    def grant(self, database: str, user: str, privileges: str) -> None:
        from psycopg import sql

        db, role = sql.Identifier(_checked(database)), sql.Identifier(_checked(user))
        self.revoke(database, user)
        self._run([(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, role), ())])
        if privileges == "all":
            statements = [
                (sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(role), ()),
                (sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(role), ()),
                (sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(role), ()),
                (
                    sql.SQL(
                        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO {}"
                    ).format(role),
                    (),
                ),
            ]
        else:
            statements = [
                (sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role), ()),
                (sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role), ()),
                (
                    sql.SQL(
                        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}"
                    ).format(role),
                    (),
                ),
            ]
        self._run(statements, dbname=database)
        self._follow_future_tables(database, user, privileges)

    def _default_acl(self, database: str) -> list[tuple[str, str, str]]:
        """(creator role, grantee, privilege) of the default privileges on tables in the
        database's public schema."""
        rows = self._run(
            [
                (
                    "SELECT pg_get_userbyid(d.defaclrole), pg_get_userbyid(a.grantee), "
                    "a.privilege_type FROM pg_default_acl d "
                    "JOIN pg_namespace n ON n.oid = d.defaclnamespace, "
                    "LATERAL aclexplode(d.defaclacl) a "
                    "WHERE n.nspname = 'public' AND d.defaclobjtype = 'r' AND a.grantee <> 0",
                    (),
                )
            ],
            dbname=database,
            fetch=True,
        )
        return [tuple(r) for r in rows or []]

    def _writers_and_readers(self, database: str) -> tuple[set[str], set[str]]:
        """Who holds "all" and who "read" here, from the default privileges the
        administrative login set for them at their grants (readers: SELECT alone)."""
        me = self._run([("SELECT current_user", ())], fetch=True)[0][0]
        held: dict[str, set[str]] = {}
        for creator, grantee, privilege in self._default_acl(database):
            if creator == me and grantee != me:
                held.setdefault(grantee, set()).add(privilege)
        readers = {g for g, p in held.items() if p == {"SELECT"}}
        return set(held) - readers, readers

    def _follow_future_tables(self, database: str, user: str, privileges: str) -> None:
        """The default privileges above cover tables the administrative login creates; the
        customer's tables are created by its "all" users. So a reader also gets SELECT on
        every table each writer creates later, and a new writer's future tables are
        readable by the readers already there (never more than SELECT)."""
        from psycopg import sql

        writers, readers = self._writers_and_readers(database)
        if privileges == "all":
            pairs = [(user, reader) for reader in sorted(readers)]
        else:
            pairs = [(writer, user) for writer in sorted(writers)]
        statements = [
            (
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                    "GRANT SELECT ON TABLES TO {}"
                ).format(sql.Identifier(_checked(w)), sql.Identifier(_checked(r))),
                (),
            )
            for w, r in pairs
        ]
        if statements:
            self._run(statements, dbname=database)

    def revoke(self, database: str, user: str) -> None:
        from psycopg import sql

        if not (self.user_exists(user) and self.database_exists(database)):
            return
        db, role = sql.Identifier(_checked(database)), sql.Identifier(_checked(user))
        self._run([(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, role), ())])
        self._run(
            [
                (sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(role), ()),
                (sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(role), ()),
                (sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(role), ()),
                (
                    sql.SQL(
                        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {}"
                    ).format(role),
                    (),
                ),
            ],
            dbname=database,
        )
        # Default privileges between the customer's roles: none given to it by a writer,
        # none it gives as a writer (a revoked writer's future tables stay private).
        pairs = set()
        for creator, grantee, _privilege in self._default_acl(database):
            if grantee == user and creator != user:
                pairs.add((creator, user))
            elif creator == user and grantee != user:
                pairs.add((user, grantee))
        statements = [
            (
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                    "REVOKE ALL ON TABLES FROM {}"
                ).format(sql.Identifier(who), sql.Identifier(to)),
                (),
            )
            for who, to in sorted(pairs)
        ]
        if statements:
            self._run(statements, dbname=database)

    def sizes(self, names: list[str]) -> dict[str, int]:
        if not names:
            return {}
        rows = self._run(
            [
                (
                    "SELECT datname, pg_database_size(datname) FROM pg_database "
                    "WHERE datname = ANY(%s)",
                    (list(names),),
                )
            ],
            fetch=True,
        )
        return {name: int(size) for name, size in rows or []}
