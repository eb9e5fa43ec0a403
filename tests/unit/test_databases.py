"""Customer databases without a database server: names, visibility, passwords shown once,
the API's answers, the plan hook. The real MariaDB/PostgreSQL work is in
tests/integration/test_databases.py."""

from __future__ import annotations

import jsonschema
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import User
from core import schedules
from core.models import AuditEntry, Operation
from tests.conftest import login
from tests.unit.test_api_schema import to_json_schema
from websites import plans
from websites.databases import naming, services
from websites.databases.models import CustomerDatabase, DatabaseGrant, DatabaseServer, DatabaseUser
from websites.models import Plan, Subscription

pytestmark = pytest.mark.django_db


def subscribe(*users, databases=None):
    plan = Plan.objects.create(name=f"plan-{databases}-{users[0].pk}", databases=databases)
    for user in users:
        Subscription.objects.create(user=user, plan=plan)


@pytest.fixture(autouse=True)
def _plans(request):
    """Customers acting alone need a plan: an unlimited one unless a test says otherwise."""
    names = [n for n in ("customer", "mallory") if n in request.fixturenames]
    users = [request.getfixturevalue(n) for n in names]
    if users and "limited" not in request.node.name:
        subscribe(*users)


@pytest.fixture
def db_server(db):
    return DatabaseServer.objects.create(
        name="maria", engine="mariadb", host="127.0.0.1", port=3306, admin_user="root"
    )


class TestNames:
    @given(st.text(max_size=40))
    def test_whatever_is_accepted_is_plain(self, suffix):
        try:
            name = naming.full_name("acme", suffix, engine="mariadb", kind="user")
        except ValidationError:
            return
        assert name.startswith("acme_") and len(name) <= 32
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")

    @pytest.mark.parametrize(
        "bad", ["a'b", 'a"b', "a`b", "a;b", "A", "_a", "a b", "a%", "a\\b", ""]
    )
    def test_quotes_and_wildcards_are_refused(self, bad):
        with pytest.raises(ValidationError):
            naming.full_name("acme", bad, engine="postgresql", kind="database")

    def test_each_engine_has_its_limits(self):
        long = "x" * 27  # acme_ + 27 = 32
        assert naming.full_name("acme", long, engine="mariadb", kind="user")
        with pytest.raises(ValidationError, match="32"):
            naming.full_name("acme", long + "y", engine="mariadb", kind="user")
        assert naming.full_name("acme", long + "y", engine="postgresql", kind="user")


class TestServices:
    def test_create_prefixes_audits_and_starts_one_operation(self, customer, db_server):
        database, password = services.do_create_database(
            actor=customer, data={"db_server": db_server, "name": "shop"}, with_user=True
        )
        assert database.name == f"{customer.account_name}_shop"
        assert database.status == "pending" and len(password) >= 32
        user = DatabaseUser.objects.get()
        assert user.name == database.name and user.password == password
        assert DatabaseGrant.objects.get().privileges == "all"
        op = Operation.objects.get()
        assert op.kind == "database.create" and op.owner == customer
        assert set(op.args) == {"database_id", "user_id", "grant_id"}
        assert password not in repr(op.args)
        actions = set(AuditEntry.objects.values_list("action", flat=True))
        assert {"database.create", "database_user.create", "database_grant.create"} <= actions
        assert password not in repr(list(AuditEntry.objects.values_list("changes", flat=True)))

    def test_the_same_name_twice_is_refused(self, customer, db_server):
        services.do_create_database(actor=customer, data={"db_server": db_server, "name": "a"})
        with pytest.raises(ValidationError, match="exists"):
            services.do_create_database(actor=customer, data={"db_server": db_server, "name": "a"})

    def test_customers_make_databases_only_for_themselves(self, customer, mallory, db_server):
        with pytest.raises(ValidationError):
            services.do_create_database(
                actor=customer, data={"db_server": db_server, "name": "x", "owner": mallory}
            )

    def test_a_reseller_makes_them_for_its_customers(self, reseller, customer, db_server):
        database, _ = services.do_create_database(
            actor=reseller, data={"db_server": db_server, "name": "x", "owner": customer}
        )
        assert database.owner == customer and database.name.startswith(customer.account_name)

    def test_grants_stay_within_one_owner(self, customer, mallory, db_server):
        mine, _ = services.do_create_database(
            actor=customer, data={"db_server": db_server, "name": "a"}
        )
        theirs, _, _ = services.do_create_user(
            actor=mallory, data={"db_server": db_server, "name": "a"}
        )
        with pytest.raises(ValidationError):
            services.do_grant(actor=customer, data={"database": mine, "user": theirs})
        with pytest.raises(ValidationError):
            services.do_grant(actor=mallory, data={"database": mine, "user": theirs})

    def test_closed_servers_take_no_new_databases(self, customer, db_server):
        db_server.accepts_new = False
        db_server.save()
        with pytest.raises(ValidationError, match="no new"):
            services.do_create_database(actor=customer, data={"db_server": db_server, "name": "a"})

    def test_only_administrators_manage_database_servers(self, reseller, admin_user):
        from django.core.exceptions import PermissionDenied

        data = {"name": "pg", "engine": "postgresql", "host": "127.0.0.1", "port": 5432}
        with pytest.raises(PermissionDenied):
            services.do_create_database_server(actor=reseller, data={**data, "admin_user": "x"})
        made = services.do_create_database_server(
            actor=admin_user,
            data={**data, "admin_user": "postgres", "admin_password": "s3cret-Admin-pw"},
        )
        assert made.admin_password == "s3cret-Admin-pw"
        with connection.cursor() as cur:
            table = DatabaseServer._meta.db_table
            cur.execute(f"SELECT admin_password FROM {table} WHERE id = %s", [made.pk])  # noqa: S608
            stored = cur.fetchone()[0]
        assert stored and "s3cret-Admin-pw" not in stored  # encrypted at rest

    def test_databases_are_limited_by_the_plan(self, customer, db_server):
        subscribe(customer, databases=1)
        services.do_create_database(actor=customer, data={"db_server": db_server, "name": "a"})
        with pytest.raises(ValidationError, match="allows 1 database"):
            services.do_create_database(actor=customer, data={"db_server": db_server, "name": "b"})
        assert CustomerDatabase.objects.count() == 1
        assert plans.usage(User.objects.filter(pk=customer.pk), "databases") == 1

    def test_sizes_are_refreshed_every_hour(self):
        found = [r for r in schedules.declared() if r.func.endswith("refresh_sizes")]
        assert found and found[0].minutes == 60


class TestPortal:
    def test_the_password_is_shown_once(self, customer, db_server):
        client = login(customer)
        resp = client.post(
            "/websites/databases/add/",
            {"db_server": db_server.pk, "name": "shop", "with_user": "on"},
        )
        assert resp.status_code == 200
        user = DatabaseUser.objects.get()
        assert user.password in resp.content.decode()
        assert "no-store" in resp["Cache-Control"]
        database = CustomerDatabase.objects.get()
        for url in (
            f"/websites/databases/{database.uuid}/",
            f"/websites/databases/users/{user.uuid}/",
            "/websites/databases/",
            "/websites/databases/users/",
        ):
            page = client.get(url)
            assert page.status_code == 200 and user.password not in page.content.decode(), url
        rotated = client.post(f"/websites/databases/users/{user.uuid}/rotate/")
        user.refresh_from_db()
        assert user.password in rotated.content.decode()

    def test_names_with_quotes_are_refused_on_the_form(self, customer, db_server):
        resp = login(customer).post(
            "/websites/databases/add/", {"db_server": db_server.pk, "name": "x'; drop"}
        )
        assert resp.status_code == 400 and not CustomerDatabase.objects.exists()

    def test_lists_show_only_ones_own_with_flat_queries(self, customer, mallory, db_server):
        for n in range(3):
            services.do_create_database(
                actor=customer, data={"db_server": db_server, "name": f"c{n}"}, with_user=True
            )
        services.do_create_database(actor=mallory, data={"db_server": db_server, "name": "m"})
        client = login(customer)
        with CaptureQueriesContext(connection) as few:
            client.get("/websites/databases/")
        for n in range(3, 8):
            services.do_create_database(
                actor=customer, data={"db_server": db_server, "name": f"c{n}"}, with_user=True
            )
        with CaptureQueriesContext(connection) as many:
            page = client.get("/websites/databases/")
        assert len(many) == len(few)
        body = page.content.decode()
        assert f"{customer.account_name}_c7" in body and f"{mallory.account_name}_m" not in body

    def test_database_servers_are_for_staff(self, customer, admin_user, db_server):
        assert login(customer).get("/websites/databases/servers/").status_code == 404
        assert (
            login(customer).get(f"/websites/databases/servers/{db_server.uuid}/").status_code == 404
        )
        assert login(admin_user).get("/websites/databases/servers/").status_code == 200
        assert (
            login(admin_user).get(f"/websites/databases/servers/{db_server.uuid}/").status_code
            == 200
        )


class TestStaffPages:
    def test_an_administrator_adds_a_database_server_and_its_password_stays_hidden(
        self, admin_user, reseller
    ):
        from servers.models import Server

        server = Server.objects.create(name="web1", address="93.184.216.34", owner=reseller)
        client = login(admin_user)
        resp = client.post(
            "/websites/databases/servers/add/",
            {
                "name": "maria-web1",
                "engine": "mariadb",
                "server": server.pk,
                "host": "",
                "port": "3306",
                "admin_user": "panel",
                "admin_password": "hidden-admin-pw",
                "user_host": "%",
                "accepts_new": "on",
            },
        )
        assert resp.status_code == 302, resp.content.decode()[:2000]
        made = DatabaseServer.objects.get()
        assert made.address == "93.184.216.34" and made.admin_password == "hidden-admin-pw"
        assert AuditEntry.objects.filter(action="database_server.create").exists()
        for url in (
            f"/websites/databases/servers/{made.uuid}/edit/",
            f"/websites/databases/servers/{made.uuid}/",
            f"/servers/{server.uuid}/",
            f"/admin/databases/databaseserver/{made.pk}/change/",
        ):
            page = client.get(url)
            assert page.status_code == 200, url
            assert "hidden-admin-pw" not in page.content.decode(), url
        assert "maria-web1" in client.get(f"/servers/{server.uuid}/").content.decode()
        # The reseller owns the server but does not see the database server on its page.
        assert "maria-web1" not in login(reseller).get(f"/servers/{server.uuid}/").content.decode()


class TestApi:
    def _schema_check(self, client, route, method, status, resp):
        schema = client.get("/api/schema/?format=json").json()
        spec = schema["paths"][route][method]["responses"][str(status)]
        body = to_json_schema(spec["content"]["application/json"]["schema"])
        jsonschema.validate(
            resp.json(), {**body, "components": to_json_schema(schema["components"])}
        )

    def test_create_gives_the_password_once_and_rotate_again(self, customer, db_server):
        client = login(customer)
        resp = client.post(
            "/api/v1/databases/",
            {"db_server": str(db_server.uuid), "name": "api", "with_user": True},
            content_type="application/json",
        )
        assert resp.status_code == 201, resp.content
        self._schema_check(client, "/api/v1/databases/", "post", 201, resp)
        password = resp.json()["password"]
        user = DatabaseUser.objects.get()
        assert password == user.password
        again = client.get(f"/api/v1/databases/{resp.json()['uuid']}/").json()
        assert again["password"] is None and again["name"] == f"{customer.account_name}_api"
        listed = client.get("/api/v1/database-users/").json()
        assert password not in repr(listed)
        rotated = client.post(f"/api/v1/database-users/{user.uuid}/rotate-password/")
        assert rotated.status_code == 202
        self._schema_check(
            client, "/api/v1/database-users/{uuid}/rotate-password/", "post", 202, rotated
        )
        user.refresh_from_db()
        assert rotated.json()["password"] == user.password != password
        deleted = client.delete(f"/api/v1/databases/{resp.json()['uuid']}/")
        assert deleted.status_code == 202
        self._schema_check(client, "/api/v1/databases/{uuid}/", "delete", 202, deleted)
        assert CustomerDatabase.objects.get().status == "deleting"

    def test_quotes_are_a_400(self, customer, db_server):
        resp = login(customer).post(
            "/api/v1/databases/",
            {"db_server": str(db_server.uuid), "name": 'x"y'},
            content_type="application/json",
        )
        assert resp.status_code == 400 and "name" in resp.json()

    def test_database_servers_are_for_administrators(self, customer, reseller, db_server):
        for who in (customer, reseller):
            client = login(who)
            assert client.get("/api/v1/database-servers/").json()["results"] == []
            resp = client.post(
                "/api/v1/database-servers/",
                {
                    "name": "x",
                    "engine": "mariadb",
                    "host": "127.0.0.1",
                    "port": 1,
                    "admin_user": "r",
                },
                content_type="application/json",
            )
            assert resp.status_code in (403, 404)
        assert DatabaseServer.objects.count() == 1

    def test_admin_password_is_write_only(self, admin_user, db_server):
        client = login(admin_user)
        resp = client.patch(
            f"/api/v1/database-servers/{db_server.uuid}/",
            {"admin_password": "top-secret-pw"},
            content_type="application/json",
        )
        assert resp.status_code == 200 and "top-secret-pw" not in resp.content.decode()
        db_server.refresh_from_db()
        assert db_server.admin_password == "top-secret-pw"
        assert AuditEntry.objects.filter(action="database_server.update").exists()


@pytest.mark.django_db(transaction=True)
async def test_a_database_row_goes_live_when_its_operation_ends(customer, mallory):
    from asgiref.sync import sync_to_async

    from core import events
    from tests.unit.test_live import open_ready, receive_until, rows
    from websites.databases import tasks

    db = sync_to_async
    server = await db(DatabaseServer.objects.create)(
        name="live", engine="mariadb", host="127.0.0.1", port=3306, admin_user="root"
    )
    database, _ = await db(services.do_create_database)(
        actor=customer, data={"db_server": server, "name": "live"}
    )
    since = await db(events.current_seq)()
    comm, _ = await open_ready(f"/ws/live/databases/?since={since}", await db(login)(customer))
    other, _ = await open_ready(f"/ws/live/databases/?since={since}", await db(login)(mallory))
    await db(tasks._set)(database, "active")
    row_id = f"cdb-{database.uuid.hex}-row"
    msgs = await receive_until(comm, lambda m: row_id in rows(m), timeout=20.0)
    assert "Active" in rows(msgs)[row_id]["html"]
    assert await other.receive_nothing(timeout=0.5)  # not someone else's database
    await comm.disconnect()
    await other.disconnect()
