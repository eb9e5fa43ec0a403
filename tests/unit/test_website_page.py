"""The site page: the owner's databases on the site's server (someone else's never), this
month's traffic, and a flat number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from servers.models import Server
from tests.conftest import login
from websites.bandwidth import this_month
from websites.databases.models import CustomerDatabase, DatabaseServer
from websites.models import SiteTraffic, Website

pytestmark = pytest.mark.django_db


def test_site_page_lists_databases_and_traffic(reseller, customer, mallory):
    server = Server.objects.create(name="web", address="93.184.216.34", owner=reseller)
    other = Server.objects.create(name="web2", address="93.184.216.35", owner=reseller)
    site = Website.objects.create(domain="shop.example.com", server=server, owner=customer)
    here = DatabaseServer.objects.create(
        server=server,
        name="maria",
        engine="mariadb",
        host="127.0.0.1",
        port=3306,
        admin_user="root",
    )
    there = DatabaseServer.objects.create(
        server=other,
        name="maria2",
        engine="mariadb",
        host="127.0.0.1",
        port=3306,
        admin_user="root",
    )
    CustomerDatabase.objects.create(db_server=here, owner=customer, name="cust_shop")
    CustomerDatabase.objects.create(db_server=there, owner=customer, name="cust_elsewhere")
    CustomerDatabase.objects.create(db_server=here, owner=mallory, name="mal_secret")
    SiteTraffic.objects.create(website=site, month=this_month(), bytes=5 * 1024 * 1024)
    client = login(customer)
    client.get(f"/websites/{site.uuid}/")  # the session's first request does more
    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"/websites/{site.uuid}/").content.decode()
    assert "cust_shop" in page and "mal_secret" not in page and "cust_elsewhere" not in page
    assert "5.0\xa0MB" in page
    for n in range(3):
        CustomerDatabase.objects.create(db_server=here, owner=customer, name=f"cust_more{n}")
    with CaptureQueriesContext(connection) as more:
        client.get(f"/websites/{site.uuid}/")
    assert len(more) == len(queries)  # flat: one query for the databases however many


def test_plans_page_shows_what_each_may_read(admin_user, reseller, customer, mallory):
    from websites import plans

    staff = plans.do_create_plan(actor=admin_user, data={"name": "Staff Gold", "websites": 9})
    own = plans.do_create_plan(actor=admin_user, data={"name": "Reseller Base"})
    plans.do_subscribe(reseller, own, actor=admin_user)
    mine = plans.do_create_plan(actor=reseller, data={"name": "Tiny", "websites": 1})
    plans.do_subscribe(customer, mine, actor=reseller)
    page = login(customer).get("/websites/plans/").content.decode()
    assert "Tiny" in page and "Staff Gold" not in page and "Reseller Base" not in page
    page = login(reseller).get("/websites/plans/").content.decode()
    assert "Tiny" in page and "Reseller Base" in page and "Staff Gold" not in page
    assert "No plans yet" in login(mallory).get("/websites/plans/").content.decode()
    admin = login(admin_user)
    admin.get("/websites/plans/")
    with CaptureQueriesContext(connection) as few:
        assert staff.name in admin.get("/websites/plans/").content.decode()
    for n in range(4):
        plans.do_create_plan(actor=admin_user, data={"name": f"Extra {n}"})
    with CaptureQueriesContext(connection) as many:
        admin.get("/websites/plans/")
    assert len(many) == len(few)


def test_follow_logs_is_an_operation_the_page_listens_to(reseller, customer, mallory):
    from core.models import Operation

    server = Server.objects.create(name="web", address="93.184.216.34", owner=reseller)
    site = Website.objects.create(domain="follow.example.com", server=server, owner=customer)
    client = login(customer)
    page = client.get(f"/websites/{site.uuid}/").content.decode()
    assert 'data-testid="follow-logs"' in page and 'id="site-logs"' in page
    url = f"/websites/{site.uuid}/logs/follow/"
    assert login(mallory).post(url).status_code == 404
    resp = client.post(url)  # without htmx: the operation's own (live) page
    op = Operation.objects.get(kind="website.logs.follow")
    assert resp.status_code == 302 and resp["Location"] == op.get_absolute_url()
    assert op.args == {"site_id": site.pk, "seconds": 600} and op.lock_key == ""
    partial = client.post(url, HTTP_HX_REQUEST="true").content.decode()
    assert "data-follow-stop=" in partial and 'id="op-log"' in partial
