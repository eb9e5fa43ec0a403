"""Everyday pages: the guided dashboard, the server list's search/filters/sort, the admin
as a staff console (brand, labels, a clear answer for customers)."""

import pytest
from django.test import Client
from django.utils import timezone

from core.models import Operation
from servers.models import Server
from tests.conftest import login

pytestmark = pytest.mark.django_db


class TestDashboard:
    def test_a_new_administrator_is_guided(self, admin_user):
        body = login(admin_user).get("/").content.decode()
        assert 'data-testid="first-steps"' in body and "Add your first server" in body
        assert 'data-testid="panel-health"' in body
        assert 'data-testid="ops-chart"' not in body  # no empty chart, no row of zeros

    def test_steps_tick_off_and_the_guide_goes_away(self, admin_user):
        from websites.models import Website

        server = Server.objects.create(name="s1", address="10.0.0.1", owner=admin_user)
        body = login(admin_user).get("/").content.decode()
        assert body.count("data-done") == 1 and "Test the connection" in body
        Server.objects.filter(pk=server.pk).update(last_seen_at=timezone.now())
        Website.objects.create(domain="a.example.com", server=server, owner=admin_user)
        body = login(admin_user).get("/").content.decode()
        assert 'data-testid="first-steps"' not in body

    def test_customers_see_only_what_they_can_act_on(self, customer):
        body = login(customer).get("/").content.decode()
        assert 'data-testid="first-steps"' not in body and "Add server" not in body
        assert 'data-testid="panel-health"' not in body
        assert 'href="/servers/"' not in body  # not in their navigation either
        assert 'data-testid="nothing-yet"' in body

    def test_operations_show_human_titles(self, customer):
        from core.operations import start_operation

        start_operation(kind="server.drift_check", task="tests.support.steps", owner=customer)
        body = login(customer).get("/").content.decode()
        assert "Check drift" in body and "server.drift_check" not in body


class TestServerList:
    @pytest.fixture
    def servers(self, reseller):
        now = timezone.now()
        rows = [
            ("web-1", "10.0.0.1", "online", "physical", "Berlin", now),
            ("web-2", "10.0.0.2", "offline", "vps", "Paris", now - timezone.timedelta(days=2)),
            ("db-1", "10.0.1.1", "online", "vps", "Berlin", None),
        ]
        for name, address, status, kind, location, seen in rows:
            Server.objects.create(
                name=name,
                address=address,
                status=status,
                kind=kind,
                location=location,
                last_seen_at=seen,
                owner=reseller,
            )

    @pytest.mark.parametrize(
        "query, names",
        [
            ("", ["db-1", "web-1", "web-2"]),
            ("q=web", ["web-1", "web-2"]),
            ("q=10.0.1", ["db-1"]),
            ("q=paris", ["web-2"]),
            ("status=online", ["db-1", "web-1"]),
            ("kind=vps&status=online", ["db-1"]),
            ("sort=-name", ["web-2", "web-1", "db-1"]),
            ("sort=-last_seen&q=web", ["web-1", "web-2"]),
        ],
    )
    def test_search_filters_and_sort(self, reseller, servers, query, names):
        response = login(reseller).get(f"/servers/?{query}")
        assert [s.name for s in response.context["object_list"]] == names

    def test_nothing_matching_says_so(self, reseller, servers):
        body = login(reseller).get("/servers/?q=nomatch", HTTP_HX_REQUEST="true").content
        assert b"No server matches." in body and b"<html" not in body


class TestAdminConsole:
    def test_customer_gets_a_staff_only_page_not_a_loop(self, customer):
        client = login(customer)
        response = client.get("/admin/", follow=True)
        assert response.status_code == 403 and len(response.redirect_chain) == 1
        assert b'data-testid="staff-only"' in response.content

    def test_anonymous_signs_in_through_the_portal(self, db):
        response = Client().get("/admin/", follow=True)
        assert response.redirect_chain[-1][0].startswith("/accounts/login/")
        assert response.status_code == 200

    def test_brand_theme_and_labels(self, admin_user, customer):
        client = login(admin_user)
        index = client.get("/admin/").content.decode()
        assert "Unified Hosting Panel" in index and "css/admin.css" in index
        assert "js/theme.js" in index and "admin/js/theme.js" not in index
        assert "API tokens" in index and "Api tokens" not in index
        change = client.get(f"/admin/accounts/user/{customer.pk}/change/").content.decode()
        assert "Ip allowlist" not in change
        security = login(customer).get("/account/security/").content.decode()
        assert "IP allow-list" in security and "Ip allowlist" not in security

    def test_changelists_show_fifty_rows(self, admin_user):
        Operation.objects.bulk_create(
            Operation(kind="x.y", task="tests.support.steps", owner=admin_user) for _ in range(60)
        )
        response = login(admin_user).get("/admin/core/operation/")
        assert len(response.context["cl"].result_list) == 50
