from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services
from accounts.models import ApiToken, Role, User
from core.models import AuditEntry, Operation
from tests.conftest import login

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def make_token(user, scope="read", **kw):
    return services.do_create_token(user, actor=user, data={"name": "ci", "scope": scope, **kw})


def op_for(owner, **kw):
    return Operation.objects.create(kind="test.noop", task="tests.support.steps", owner=owner, **kw)


class TestTokens:
    def test_token_is_stored_hashed_and_shown_once(self, customer):
        client = login(customer)
        resp = client.post(
            "/api/v1/tokens/", {"name": "deploy", "scope": "write"}, content_type="application/json"
        )
        assert resp.status_code == 201
        raw = resp.json()["token"]
        assert raw.startswith("uhp_")
        token = ApiToken.objects.get(name="deploy")
        assert raw not in (token.digest, token.prefix) and len(token.digest) == 64
        listed = client.get("/api/v1/tokens/").json()["results"]
        assert listed[0]["token"] is None
        assert Client().get("/api/v1/me/", **bearer(raw)).json()["email"] == customer.email

    def test_read_scope_cannot_write(self, customer):
        _, raw = make_token(customer, "read")
        client = Client()
        assert client.get("/api/v1/operations/", **bearer(raw)).status_code == 200
        resp = client.patch(
            "/api/v1/me/", {"name": "X"}, content_type="application/json", **bearer(raw)
        )
        assert resp.status_code == 403 and "read-only" in resp.json()["detail"]
        _, raw_w = make_token(customer, "write")
        resp = client.patch(
            "/api/v1/me/", {"name": "X"}, content_type="application/json", **bearer(raw_w)
        )
        assert resp.status_code == 200
        customer.refresh_from_db()
        assert customer.name == "X"

    def test_expired_revoked_and_forged_tokens_fail(self, customer):
        token, raw = make_token(customer, expires_at=timezone.now() + timedelta(seconds=60))
        client = Client()
        assert client.get("/api/v1/me/", **bearer(raw)).status_code == 200
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(1))
        assert client.get("/api/v1/me/", **bearer(raw)).status_code == 401
        token2, raw2 = make_token(customer)
        services.do_revoke_token(token2, actor=customer)
        assert client.get("/api/v1/me/", **bearer(raw2)).status_code == 401
        forged = raw2[:-4] + "AAAA"
        assert client.get("/api/v1/me/", **bearer(forged)).status_code == 401

    def test_last_used_is_recorded(self, customer):
        token, raw = make_token(customer)
        assert token.last_used_at is None
        Client().get("/api/v1/me/", **bearer(raw))
        token.refresh_from_db()
        assert token.last_used_at is not None

    def test_expiry_in_past_is_a_field_error(self, customer):
        resp = login(customer).post(
            "/api/v1/tokens/",
            {"name": "x", "scope": "read", "expires_at": "2001-01-01T00:00:00Z"},
            content_type="application/json",
        )
        assert resp.status_code == 400 and "expires_at" in resp.json()
        assert not ApiToken.objects.exists()

    def test_token_respects_ip_allowlist(self, customer):
        customer.ip_allowlist = "10.0.0.0/8"
        customer.save()
        _, raw = make_token(customer)
        inside = Client().get("/api/v1/me/", REMOTE_ADDR="10.1.1.1", **bearer(raw))
        outside = Client().get("/api/v1/me/", REMOTE_ADDR="127.0.0.1", **bearer(raw))
        assert inside.status_code == 200 and outside.status_code == 401

    def test_portal_token_page_creates_and_revokes(self, customer):
        client = login(customer)
        resp = client.post("/account/tokens/", {"name": "ci", "scope": "read"})
        assert resp.status_code == 200 and resp.context["new_token"].startswith("uhp_")
        token = ApiToken.objects.get(user=customer)
        resp = client.post(f"/account/tokens/{token.uuid}/revoke/")
        token.refresh_from_db()
        assert resp.status_code == 302 and token.revoked_at is not None
        assert AuditEntry.objects.filter(action="token.revoke").count() == 1

    def test_session_api_requires_csrf(self, customer):
        client = login(customer, client=Client(enforce_csrf_checks=True))
        resp = client.patch("/api/v1/me/", {"name": "X"}, content_type="application/json")
        assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]


class TestUsersEndpoint:
    def test_reseller_creates_customer_under_itself(self, reseller):
        client = login(reseller)
        resp = client.post(
            "/api/v1/users/",
            {"email": "new@example.com", "role": "customer"},
            content_type="application/json",
        )
        assert resp.status_code == 201, resp.content
        user = User.objects.get(email="new@example.com")
        assert user.reseller == reseller and not user.has_usable_password()

    def test_reseller_cannot_create_admin(self, reseller):
        resp = login(reseller).post(
            "/api/v1/users/",
            {"email": "x@example.com", "role": "admin"},
            content_type="application/json",
        )
        assert resp.status_code == 400 and "role" in resp.json()
        assert not User.objects.filter(email="x@example.com").exists()

    def test_validation_errors_are_field_errors(self, admin_user):
        resp = login(admin_user).post(
            "/api/v1/users/",
            {"email": "not-an-email", "role": "x"},
            content_type="application/json",
        )
        assert resp.status_code == 400
        assert set(resp.json()) >= {"email", "role"}

    def test_visibility(self, personas):
        seen = {
            name: {u["email"] for u in login(user).get("/api/v1/users/").json()["results"]}
            for name, user in personas.items()
        }
        assert len(seen["admin"]) == 5 and len(seen["support"]) == 5
        assert seen["reseller"] == {"reseller@example.com", "customer@example.com"}
        assert seen["customer"] == {"customer@example.com"}

    def test_support_cannot_change_users(self, support, customer):
        resp = login(support).patch(
            f"/api/v1/users/{customer.uuid}/", {"name": "hacked"}, content_type="application/json"
        )
        assert resp.status_code == 404
        customer.refresh_from_db()
        assert customer.name == ""

    def test_reseller_cannot_promote(self, reseller, customer):
        resp = login(reseller).patch(
            f"/api/v1/users/{customer.uuid}/", {"role": "admin"}, content_type="application/json"
        )
        assert resp.status_code == 400
        customer.refresh_from_db()
        assert customer.role == Role.CUSTOMER


class TestOutOfReachIs404:
    """Every tenant URL, portal and API, tried as the unrelated customer."""

    def test_portal_and_api(self, customer, mallory, reseller):
        op = op_for(customer)
        token, _ = make_token(customer)
        client = login(mallory)
        portal = [
            ("get", f"/operations/{op.uuid}/"),
            ("post", f"/operations/{op.uuid}/cancel/"),
            ("post", f"/operations/{op.uuid}/retry/"),
            ("post", f"/account/tokens/{token.uuid}/revoke/"),
        ]
        api = [
            ("get", f"/api/v1/operations/{op.uuid}/"),
            ("get", f"/api/v1/operations/{op.uuid}/log/"),
            ("post", f"/api/v1/operations/{op.uuid}/cancel/"),
            ("post", f"/api/v1/operations/{op.uuid}/retry/"),
            ("get", f"/api/v1/users/{customer.uuid}/"),
            ("patch", f"/api/v1/users/{customer.uuid}/"),
            ("get", f"/api/v1/users/{reseller.uuid}/"),
            ("get", f"/api/v1/tokens/{token.uuid}/"),
            ("delete", f"/api/v1/tokens/{token.uuid}/"),
        ]
        for method, url in portal + api:
            resp = getattr(client, method)(url, content_type="application/json")
            assert resp.status_code == 404, (method, url, resp.status_code)
        entry = AuditEntry.objects.filter(owner_id=customer.pk).first()
        assert client.get(f"/api/v1/audit/{entry.pk}/").status_code == 404
        op.refresh_from_db()
        token.refresh_from_db()
        assert op.state == "queued" and token.revoked_at is None

    def test_reseller_reaches_its_customers_operations(self, customer, reseller, mallory):
        op = op_for(customer)
        client = login(reseller)
        assert client.get(f"/operations/{op.uuid}/").status_code == 200
        assert client.get(f"/api/v1/operations/{op.uuid}/").status_code == 200
        assert login(mallory).get("/api/v1/operations/").json()["results"] == []

    def test_guardian_grant_opens_one_object(self, customer, mallory):
        from guardian.shortcuts import assign_perm

        op, other = op_for(customer), op_for(customer)
        assign_perm("core.view_operation", mallory, op)
        client = login(mallory)
        assert client.get(f"/api/v1/operations/{op.uuid}/").status_code == 200
        assert client.get(f"/api/v1/operations/{other.uuid}/").status_code == 404
        assert client.post(f"/api/v1/operations/{op.uuid}/cancel/").status_code == 404


class TestQueryCounts:
    def _count(self, client, url, owner, n):
        for _ in range(n):
            op_for(owner)
        client.get(url)  # warm per-process caches (content types), then count
        with CaptureQueriesContext(connection) as ctx:
            resp = client.get(url)
        assert resp.status_code == 200
        return len(ctx)

    @pytest.mark.parametrize("url", ["/api/v1/operations/", "/operations/", "/"])
    def test_operation_lists_are_flat(self, reseller, customer, url):
        client = login(reseller)
        few = self._count(client, url, customer, 2)
        many = self._count(client, url, customer, 30)
        assert few == many, f"{url}: {few} queries for 2 rows, {many} for 32"

    def test_users_and_audit_are_flat(self, admin_user, reseller):
        client = login(admin_user)
        counts = []
        for n in (2, 25):
            for i in range(n):
                services.do_create_user(
                    actor=admin_user,
                    data={
                        "email": f"u{n}-{i}@example.com",
                        "role": "customer",
                        "reseller": reseller,
                    },
                )
            with CaptureQueriesContext(connection) as ctx:
                assert client.get("/api/v1/users/").status_code == 200
                assert client.get("/api/v1/audit/").status_code == 200
                assert client.get("/account/activity/").status_code == 200
            counts.append(len(ctx))
        assert counts[0] == counts[1]


class TestSchemaAndDocs:
    def test_schema_and_offline_docs(self, customer):
        client = login(customer)
        schema = client.get("/api/schema/")
        assert schema.status_code == 200
        body = schema.content.decode()
        for path in ("/api/v1/operations/", "/api/v1/users/", "/api/v1/tokens/", "/api/v1/audit/"):
            assert path in body
        docs = client.get("/api/docs/")
        assert docs.status_code == 200
        html = docs.content.decode()
        assert "drf_spectacular_sidecar" in html and "cdn" not in html.lower()

    def test_anonymous_api_is_401(self, db):
        assert Client().get("/api/v1/operations/").status_code == 401

    def test_pagination_by_cursor(self, customer):
        ops = [op_for(customer) for _ in range(3)]
        client = login(customer)
        first = client.get("/api/v1/operations/?limit=2").json()
        assert [r["uuid"] for r in first["results"]] == [str(ops[2].uuid), str(ops[1].uuid)]
        assert first["previous"] is None and "cursor=" in first["next"]
        second = client.get(first["next"]).json()
        assert [r["uuid"] for r in second["results"]] == [str(ops[0].uuid)]
        assert second["next"] is None
        back = client.get(second["previous"]).json()
        assert back["results"] == first["results"]

    def test_page_size_is_capped(self, customer, admin_user):
        for _ in range(3):
            op_for(customer)
        from core import pagination

        client = login(customer)
        big = client.get("/api/v1/operations/?limit=100000")
        assert big.status_code == 400 and "limit" in big.json()  # refused, not guessed at
        largest = pagination.KeysetPagination().max_page_size
        most = client.get(f"/api/v1/operations/?limit={largest}")
        assert len(most.json()["results"]) == 3
        users = login(admin_user).get("/api/v1/users/?limit=100000")
        assert users.status_code == 400 and "limit" in users.json()

    def test_filter_by_state(self, customer):
        op_for(customer, state="failed")
        op_for(customer)
        data = login(customer).get("/api/v1/operations/?state=failed").json()
        assert [r["state"] for r in data["results"]] == ["failed"]
