"""The websites portal: list (search, status filter, flat queries), creation, site page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import Operation
from monitoring.models import Check
from servers.models import Server
from tests.conftest import login, make_user
from websites import plans
from websites.models import SystemAccount, Website


@pytest.fixture
def server(db, admin_user):
    return Server.objects.create(
        name="web1", address="93.184.216.34", owner=admin_user, facts={"php_versions": ["8.2"]}
    )


def _sites(owner, server, n, prefix="s"):
    return [
        Website.objects.create(
            domain=f"{prefix}{i}.{owner.account_name}.test", server=server, owner=owner
        )
        for i in range(n)
    ]


def test_list_search_filter_and_flat_queries(server):
    owner = make_user("lister@example.com", "customer")
    _sites(owner, server, 3)
    c = login(owner)
    c.get("/websites/")
    with CaptureQueriesContext(connection) as few:
        assert c.get("/websites/").status_code == 200
    _sites(owner, server, 20, prefix="t")
    with CaptureQueriesContext(connection) as many:
        page = c.get("/websites/").content.decode()
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert "t19." in page
    Website.objects.filter(domain__startswith="t1").update(status="failed")
    page = c.get("/websites/?status=failed", HTTP_HX_REQUEST="true").content.decode()
    assert "t1." in page and "s0." not in page
    page = c.get("/websites/?q=s2", HTTP_HX_REQUEST="true").content.decode()
    assert "s2." in page and "s1." not in page


def test_create_goes_to_the_live_operation_and_plan_usage_shows(server, admin_user):
    owner = make_user("maker@example.com", "customer")
    plan = plans.do_create_plan(actor=admin_user, data={"name": "Two", "websites": 2})
    plans.do_subscribe(owner, plan, actor=admin_user)
    c = login(owner)
    assert c.get("/websites/add/").status_code == 200
    resp = c.post(
        "/websites/add/",
        {"domain": "new.maker.test", "server": server.pk, "kind": "php", "php_version": "8.2"},
    )
    assert resp.status_code == 302, resp.content.decode()[:2000]
    op = Operation.objects.get(kind="website.create")
    assert resp["Location"] == op.get_absolute_url()
    site = Website.objects.get(domain="new.maker.test")
    assert SystemAccount.objects.filter(user=owner, server=server, name=owner.account_name)
    # Monitoring's automatic HTTP check of the new site (monitoring.services.ensure_site_check).
    assert Check.objects.get(source=f"website:{site.uuid.hex}").owner == owner
    page = c.get("/websites/").content.decode()
    assert "1 of 2" in page
    detail = c.get(f"/websites/{site.uuid}/").content.decode()
    assert owner.account_name in detail and "93.184.216.34" in detail  # SFTP user and host
    resp = c.post("/websites/add/", {"domain": "a;b", "server": server.pk, "kind": "static"})
    assert resp.status_code == 400


def test_customer_cannot_suspend_and_outsider_sees_nothing(server, admin_user):
    owner = make_user("owner@example.com", "customer")
    (site,) = _sites(owner, server, 1)
    c = login(owner)
    resp = c.post(f"/websites/{site.uuid}/suspend/")
    assert resp.status_code == 302
    site.refresh_from_db()
    assert not site.suspended
    other = login(make_user("other@example.com", "customer"))
    assert other.get(f"/websites/{site.uuid}/").status_code == 404
    assert login(admin_user).post(f"/websites/{site.uuid}/suspend/").status_code == 302
    site.refresh_from_db()
    assert site.suspended


def test_list_at_a_thousand_sites_costs_what_it_costs_at_three(server):
    """The page reads one page of rows (with server and owner), a count and the plan usage:
    nothing per row, whatever the owner holds."""
    owner = make_user("thousand@example.com", "customer")
    _sites(owner, server, 3)
    c = login(owner)
    c.get("/websites/")
    with CaptureQueriesContext(connection) as few:
        assert c.get("/websites/").status_code == 200
    Website.objects.bulk_create(
        Website(domain=f"bulk{i}.thousand.test", server=server, owner=owner) for i in range(997)
    )
    with CaptureQueriesContext(connection) as many:
        page = c.get("/websites/").context["page_obj"]
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert page.paginator.count == 1000 and len(page.object_list) == 25
    rows = [q["sql"] for q in many.captured_queries if 'FROM "websites_website"' in q["sql"]]
    assert not [sql for sql in rows if "private_key" in sql], "server secrets decrypted per row"
