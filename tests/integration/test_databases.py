"""Customer databases on the real MariaDB (127.0.0.1:3306, root without password) and
PostgreSQL (127.0.0.1:5432, trust authentication).

Each test's names start with a random account name, and everything they make is dropped
at the end. PostgreSQL trusts every local login, so its password checks cannot be tested
there; what is tested is that a new role logs in to its own database and that privileges
(CONNECT revoked from PUBLIC) refuse it another customer's. MariaDB checks passwords: a
rotation makes the old one fail.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import string

import pytest
from django.core.exceptions import ValidationError

from tests.conftest import make_user, require_real
from websites.databases import services
from websites.databases.adapters import (
    DatabaseAdapterError,
    Endpoint,
    adapter_for,
    grant_pattern,
    quote_db,
)
from websites.databases.models import CustomerDatabase, DatabaseServer, DatabaseUser

MARIADB = ("127.0.0.1", 3306)
POSTGRES = ("127.0.0.1", 5432)


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def customer() -> object:
    """A customer with an unlimited plan and a random account name."""
    from websites.models import Plan, Subscription

    user = make_user(f"{unique_prefix()}@example.com", "customer")
    plan = Plan.objects.create(name=f"unlimited-{user.pk}")
    Subscription.objects.create(user=user, plan=plan)
    return user


def unique_prefix() -> str:
    return "t" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(7))


@pytest.fixture(scope="module")
def mariadb():
    if not _listening(*MARIADB):
        require_real("MariaDB does not listen on 127.0.0.1:3306")
    ep = Endpoint("mariadb", *MARIADB, admin_user="root", admin_password="")
    adapter_for(ep).check()
    return ep


@pytest.fixture(scope="module")
def postgres():
    if not _listening(*POSTGRES):
        require_real("PostgreSQL does not listen on 127.0.0.1:5432")
    ep = Endpoint("postgresql", *POSTGRES, admin_user="postgres", admin_password="")
    adapter_for(ep).check()
    return ep


class Cleanup:
    """Drops every database and user a test made, whatever happened."""

    def __init__(self, ep: Endpoint) -> None:
        self.adapter = adapter_for(ep)
        self.databases: list[str] = []
        self.users: list[str] = []

    def db(self, name: str) -> str:
        self.databases.append(name)
        return name

    def user(self, name: str) -> str:
        self.users.append(name)
        return name

    def run(self) -> None:
        for user in self.users:
            with contextlib.suppress(DatabaseAdapterError):
                self.adapter.drop_user(user, self.databases)
        for db in self.databases:
            with contextlib.suppress(DatabaseAdapterError):
                self.adapter.drop_database(db)


@pytest.fixture
def clean_maria(mariadb):
    c = Cleanup(mariadb)
    yield c
    c.run()


@pytest.fixture
def clean_pg(postgres):
    c = Cleanup(postgres)
    yield c
    c.run()


def maria_login(user: str, password: str, db: str | None = None):
    import pymysql

    return pymysql.connect(
        host=MARIADB[0],
        port=MARIADB[1],
        user=user,
        password=password,
        database=db,
        connect_timeout=5,
    )


def pg_login(user: str, db: str):
    import psycopg

    return psycopg.connect(
        host=POSTGRES[0], port=POSTGRES[1], user=user, dbname=db, connect_timeout=5
    )


class TestMariaDBAdapter:
    def test_user_reaches_its_database_only_and_rotation_locks_out_the_old_password(
        self, mariadb, clean_maria
    ):
        import pymysql

        a = adapter_for(mariadb)
        p1, p2 = unique_prefix(), unique_prefix()
        mine, theirs = clean_maria.db(f"{p1}_shop"), clean_maria.db(f"{p2}_shop")
        # An underscore is a wildcard in GRANT ... ON: "p1_shop" must not open "p1xshop".
        lookalike = clean_maria.db(f"{p1}_shop2")
        user = clean_maria.user(f"{p1}_shop")
        for db in (mine, theirs, lookalike):
            a.create_database(db)
            a.create_database(db)  # a re-run finishes, it does not fail
        a.create_user(user, "first-Secret-1")
        a.create_user(user, "first-Secret-1")
        a.grant(mine, user, "all")
        a.grant(mine, user, "all")
        with maria_login(user, "first-Secret-1", mine) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id int)")
            cur.execute("INSERT INTO t VALUES (1)")
            conn.commit()
        for other in (theirs, lookalike):
            with pytest.raises(pymysql.err.OperationalError) as refused:
                maria_login(user, "first-Secret-1", other)
            assert refused.value.args[0] == 1044  # access denied to database
        assert a.sizes([mine])[mine] > 0

        a.set_password(user, "second-Secret-2")
        with pytest.raises(pymysql.err.OperationalError) as old:
            maria_login(user, "first-Secret-1", mine)
        assert old.value.args[0] == 1045  # access denied (password)
        maria_login(user, "second-Secret-2", mine).close()

        a.grant(mine, user, "read")
        with maria_login(user, "second-Secret-2", mine) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM t")
            assert cur.fetchall() == ((1,),)
            with pytest.raises(pymysql.err.OperationalError):
                cur.execute("INSERT INTO t VALUES (2)")
        a.revoke(mine, user)
        a.revoke(mine, user)
        with pytest.raises(pymysql.err.OperationalError):
            maria_login(user, "second-Secret-2", mine)
        a.drop_user(user)
        a.drop_user(user)
        assert not a.user_exists(user)
        a.drop_database(mine)
        a.drop_database(mine)
        assert not a.database_exists(mine)

    def test_quotes_and_wildcards_never_reach_the_server(self, mariadb):
        a = adapter_for(mariadb)
        for bad in ("a`b", "x'; DROP DATABASE mysql; --", 'ab"c', "abc_%", "abc_d e"):
            with pytest.raises(DatabaseAdapterError):
                a.create_database(bad)
            with pytest.raises(DatabaseAdapterError):
                a.create_user(bad, "pw")
        assert quote_db("abc_def") == "`abc_def`"
        assert grant_pattern("abc_def") == "`abc\\_def`"


class TestPostgresAdapter:
    def test_role_reaches_its_database_and_is_refused_another(self, postgres, clean_pg):
        import psycopg

        a = adapter_for(postgres)
        p1, p2 = unique_prefix(), unique_prefix()
        mine, theirs = clean_pg.db(f"{p1}_app"), clean_pg.db(f"{p2}_app")
        user, other_user = clean_pg.user(f"{p1}_app"), clean_pg.user(f"{p2}_app")
        for db in (mine, theirs):
            a.create_database(db)
            a.create_database(db)
        a.create_user(user, "pw-one")
        a.create_user(user, "pw-two")  # exists: the password changes, nothing fails
        a.create_user(other_user, "pw")
        a.grant(mine, user, "all")
        a.grant(theirs, other_user, "all")
        with pg_login(user, mine) as conn:
            conn.execute("CREATE TABLE t (id int)")
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            pg_login(user, theirs)
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            pg_login(other_user, mine)
        assert a.sizes([mine])[mine] > 0

        a.grant(mine, other_user, "read")
        with pg_login(other_user, mine) as conn:
            conn.execute("SELECT 1")  # connects; the table is the first user's
        a.revoke(mine, other_user)
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            pg_login(other_user, mine)
        # Dropping the role keeps its tables (handed to the administrative login).
        a.drop_user(user, [mine])
        a.drop_user(user, [mine])
        assert not a.user_exists(user)
        rows = a._run([("SELECT count(*) FROM t", ())], dbname=mine, fetch=True)
        assert rows == [(1,)]
        a.drop_database(mine)
        assert not a.database_exists(mine)

    def test_read_grants_cover_tables_the_writers_create_later(self, postgres, clean_pg):
        """A reader gets SELECT on tables a writer ("all") creates after the grant, in
        either order of the grants, and never INSERT; after a revoke, nothing new."""
        import psycopg

        a = adapter_for(postgres)
        p = unique_prefix()
        db = clean_pg.db(f"{p}_app")
        writer, reader, late = (clean_pg.user(f"{p}_{n}") for n in ("w", "r", "late"))
        a.create_database(db)
        for name in (writer, reader, late):
            a.create_user(name, "pw")
        a.grant(db, writer, "all")
        a.grant(db, reader, "read")  # after the writer
        with pg_login(writer, db) as conn:
            conn.execute("CREATE TABLE later (id int)")
            conn.execute("INSERT INTO later VALUES (7)")
        with pg_login(reader, db) as conn:
            assert conn.execute("SELECT id FROM later").fetchall() == [(7,)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO later VALUES (8)")
        with pg_login(reader, db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM later")

        a.grant(db, late, "all")  # a writer granted after the reader
        with pg_login(late, db) as conn:
            conn.execute("CREATE TABLE from_late (id int)")
        with pg_login(reader, db) as conn:
            assert conn.execute("SELECT count(*) FROM from_late").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE from_late SET id = 1")

        a.grant(db, reader, "read")  # again: the same defaults, no error
        a.revoke(db, reader)
        a.grant(db, reader, "all")
        a.revoke(db, reader)  # the reader is gone: no default privilege names it
        rows = a._run(
            [
                (
                    "SELECT count(*) FROM pg_default_acl d, LATERAL aclexplode(d.defaclacl) x "
                    "WHERE x.grantee = %s::regrole OR d.defaclrole = %s::regrole",
                    (reader, reader),
                )
            ],
            dbname=db,
            fetch=True,
        )
        assert rows == [(0,)]


def _db_server(engine: str, ep: Endpoint, name: str) -> DatabaseServer:
    return DatabaseServer.objects.create(
        name=name, engine=engine, host=ep.host, port=ep.port, admin_user=ep.admin_user
    )


@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
class TestServicesEndToEnd:
    def test_create_login_refuse_rotate_delete(
        self, request, engine, admin_user, q_sync, django_capture_on_commit_callbacks
    ):
        ep = request.getfixturevalue("mariadb" if engine == "mariadb" else "postgres")
        cleanup = request.getfixturevalue("clean_maria" if engine == "mariadb" else "clean_pg")
        db_server = _db_server(engine, ep, f"{engine}-1")
        alice = customer()
        bob = customer()
        made = {}
        for who in (alice, bob):
            with django_capture_on_commit_callbacks(execute=True):
                db, password = services.do_create_database(
                    actor=who, data={"db_server": db_server, "name": "site"}, with_user=True
                )
            made[who] = (cleanup.db(db.name), cleanup.user(db.name), password)
            db.refresh_from_db()
            assert db.status == "active", db.status_message
            assert db.size_bytes is not None
            user = DatabaseUser.objects.get(name=db.name)
            assert user.status == "active" and user.password == password
            assert user.grants.get().status == "active"
        a_db, a_user, a_pw = made[alice]
        b_db = made[bob][0]
        assert a_db == f"{alice.account_name}_site"
        if engine == "mariadb":
            import pymysql

            maria_login(a_user, a_pw, a_db).close()
            with pytest.raises(pymysql.err.OperationalError):
                maria_login(a_user, a_pw, b_db)
            with django_capture_on_commit_callbacks(execute=True):
                new_pw, op = services.do_rotate_password(
                    DatabaseUser.objects.get(name=a_user), actor=alice
                )
            op.refresh_from_db()
            assert op.state == "succeeded", op.error
            with pytest.raises(pymysql.err.OperationalError):
                maria_login(a_user, a_pw, a_db)
            maria_login(a_user, new_pw, a_db).close()
        else:
            import psycopg

            pg_login(a_user, a_db).close()
            with pytest.raises(psycopg.OperationalError):
                pg_login(a_user, b_db)

        adapter = adapter_for(db_server)
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_delete_user(DatabaseUser.objects.get(name=a_user), actor=alice)
        op.refresh_from_db()
        assert op.state == "succeeded", op.error
        assert not adapter.user_exists(a_user)
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_delete_database(CustomerDatabase.objects.get(name=a_db), actor=alice)
        op.refresh_from_db()
        assert op.state == "succeeded", op.error
        assert not adapter.database_exists(a_db)
        assert not CustomerDatabase.objects.filter(name=a_db).exists()

    def test_a_failed_grant_leaves_nothing_half_made_and_a_retry_finishes(
        self, request, engine, admin_user, q_sync, django_capture_on_commit_callbacks, monkeypatch
    ):
        from core.operations import retry_operation
        from websites.databases import adapters

        ep = request.getfixturevalue("mariadb" if engine == "mariadb" else "postgres")
        cleanup = request.getfixturevalue("clean_maria" if engine == "mariadb" else "clean_pg")
        db_server = _db_server(engine, ep, f"{engine}-2")
        carol = customer()
        cls = adapters.MariaDBAdapter if engine == "mariadb" else adapters.PostgresAdapter

        def broken(self, *args):
            raise DatabaseAdapterError("grant refused (injected)")

        with monkeypatch.context() as m:
            m.setattr(cls, "grant", broken)
            with django_capture_on_commit_callbacks(execute=True):
                db, _ = services.do_create_database(
                    actor=carol, data={"db_server": db_server, "name": "blog"}, with_user=True
                )
        cleanup.db(db.name)
        cleanup.user(db.name)
        adapter = adapter_for(db_server)
        db.refresh_from_db()
        assert db.status == "failed" and "grant refused" in db.status_message
        assert not adapter.user_exists(db.name) and not adapter.database_exists(db.name)
        from core.models import Operation

        op = Operation.objects.get(kind="database.create", target_id=str(db.uuid))
        assert op.state == "failed"
        with django_capture_on_commit_callbacks(execute=True):
            again = retry_operation(op, actor=carol)
        again.refresh_from_db()
        assert again.state == "succeeded", again.error
        db.refresh_from_db()
        assert db.status == "active"
        assert adapter.user_exists(db.name) and adapter.database_exists(db.name)

    def test_names_with_quotes_are_refused(self, request, engine, admin_user):
        ep = request.getfixturevalue("mariadb" if engine == "mariadb" else "postgres")
        db_server = _db_server(engine, ep, f"{engine}-3")
        dave = customer()
        for bad in ("a'b", 'a"b', "a`b", "x; drop", "A", "_x", "a%", "a\x00b", "é"):
            with pytest.raises(ValidationError):
                services.do_create_database(actor=dave, data={"db_server": db_server, "name": bad})
        assert not CustomerDatabase.objects.exists()
