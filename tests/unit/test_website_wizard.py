"""The website creation wizard: steps validated in turn, state kept on Back, the DNS
pre-check, plan-driven choices, the single-form fallback, and the create."""

from __future__ import annotations

import re

import pytest

from core.models import Operation
from servers.models import Server
from tests.acme_support import DnsStandIn
from tests.conftest import login, make_user
from websites import plans
from websites.certificates.models import Certificate
from websites.models import Website

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def server(db, admin_user):
    return Server.objects.create(
        name="web1",
        address="93.184.216.34",
        owner=admin_user,
        facts={"php_versions": ["8.2", "8.3"]},
    )


@pytest.fixture
def owner(db, admin_user):
    user = make_user("wizard@example.com", "customer")
    plan = plans.do_create_plan(actor=admin_user, data={"name": "Two", "websites": 2})
    plans.do_subscribe(user, plan, actor=admin_user)
    return user


@pytest.fixture
def dns(settings):
    standin = DnsStandIn()
    settings.PANEL_ACME_RESOLVERS = [standin.address]
    yield standin
    standin.stop()


def fields(server, **extra) -> dict:
    data = {
        "domain": "shop.wizard.test",
        "aliases": "www.shop.wizard.test",
        "server": str(server.pk),
        "kind": "php",
        "php_version": "8.3",
        "upstream": "",
        "www_redirect": "",
    }
    return {**data, **extra}


def step_of(html: str) -> int:
    return int(re.search(r'data-testid="website-wizard" data-step="(\d)"', html).group(1))


def test_names_step_refuses_a_bad_domain_and_keeps_what_was_typed(server, owner):
    c = login(owner)
    page = c.get("/websites/add/").content.decode()
    assert step_of(page) == 0 and 'data-testid="wizard-step-review"' in page
    resp = c.post("/websites/add/", {**fields(server, domain="a;b"), "step": "0", "go": "1"}, **HX)
    html = resp.content.decode()
    assert resp.status_code == 200 and step_of(html) == 0
    assert 'value="a;b"' in html and 'role="alert"' in html
    assert "<html" not in html  # htmx gets the wizard alone


def test_next_shows_where_the_names_point(server, owner, dns):
    dns.records["shop.wizard.test"] = "93.184.216.34"
    dns.records["www.shop.wizard.test"] = "198.51.100.7"
    c = login(owner)
    html = c.post("/websites/add/", {**fields(server), "step": "0", "go": "1"}, **HX).content
    html = html.decode()
    assert step_of(html) == 1
    check = html[html.index('data-testid="dns-check"') :]
    assert "shop.wizard.test</span>: points at web1" in check
    assert "www.shop.wizard.test</span>: points at 198.51.100.7, none of your servers" in check


def test_check_dns_stays_on_the_names_step(server, owner, dns):
    dns.records["shop.wizard.test"] = "93.184.216.34"
    c = login(owner)
    data = {**fields(server, aliases=""), "step": "0", "go": "0", "check": "dns"}
    html = c.post("/websites/add/", data, **HX).content.decode()
    assert step_of(html) == 0 and "shop.wizard.test</span>: points at web1" in html
    bad = c.post("/websites/add/", {**data, "domain": "a;b"}, **HX).content.decode()
    assert step_of(bad) == 0 and 'role="alert"' in bad and "dns-check" not in bad


def test_a_php_version_the_server_lacks_stops_at_its_step(server, owner):
    c = login(owner)
    data = {**fields(server, php_version="7.4"), "step": "1", "go": "2"}
    html = c.post("/websites/add/", data, **HX).content.decode()
    assert step_of(html) == 1 and "Select a valid choice" in html


def test_back_keeps_the_state_without_errors(server, owner):
    c = login(owner)
    data = {**fields(server, domain="kept.wizard.test", php_version="8.2"), "step": "2", "go": "0"}
    html = c.post("/websites/add/", data, **HX).content.decode()
    assert step_of(html) == 0
    assert 'value="kept.wizard.test"' in html and 'value="8.2" selected' in html
    assert 'role="alert"' not in html


def test_review_then_create_goes_to_the_live_operation(server, owner):
    c = login(owner)
    data = {**fields(server, www_redirect="to_apex", https_redirect="on"), "step": "2"}
    html = c.post("/websites/add/", {**data, "go": "3"}, **HX).content.decode()
    assert step_of(html) == 3
    review = html[html.index('data-testid="wizard-review"') :]
    assert "shop.wizard.test, www.shop.wizard.test" in review and "Website 1 of 2" in review
    assert not Website.objects.exists()  # nothing is written before "Create"
    resp = c.post("/websites/add/", {**data, "step": "3", "go": "create"}, **HX)
    op = Operation.objects.get(kind="website.create")
    assert resp.status_code == 204 and resp["HX-Redirect"] == op.get_absolute_url()
    site = Website.objects.get(domain="shop.wizard.test")
    assert site.options == {"www_redirect": "to_apex", "https_redirect": True}
    assert site.kind == "php" and site.php_version == "8.3" and site.owner == owner
    assert not Certificate.objects.filter(website=site).exists()  # the box was not ticked


def test_a_www_redirect_needs_both_names(server, owner):
    c = login(owner)
    data = {**fields(server, aliases="", www_redirect="to_apex"), "step": "2", "go": "3"}
    html = c.post("/websites/add/", data, **HX).content.decode()
    assert step_of(html) == 2 and "www.NAME" in html


def test_kinds_and_php_versions_come_from_the_plan(server, admin_user):
    user = make_user("narrow@example.com", "customer")
    plan = plans.do_create_plan(
        actor=admin_user, data={"name": "PHP 8.2", "kinds": "static php", "php_versions": "8.2"}
    )
    plans.do_subscribe(user, plan, actor=admin_user)
    form = login(user).get("/websites/add/").context["form"]
    assert [k for k, _ in form.fields["kind"].choices] == ["static", "php"]
    assert [v for v, _ in form.fields["php_version"].choices] == ["", "8.2"]


def test_tls_box_requests_a_certificate_after_the_site(server, owner, settings):
    settings.PANEL_ACME_AUTO = False  # the panel would otherwise order one by itself
    c = login(owner)
    resp = c.post("/websites/add/", {**fields(server), "tls": "on", "go": "create"})
    assert resp.status_code == 302
    site = Website.objects.get(domain="shop.wizard.test")
    assert Certificate.objects.get(website=site).status == Certificate.Status.PENDING
    kinds = list(Operation.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == ["website.create", "certificate.issue"]  # in this order, one server lock


@pytest.mark.parametrize("auto", [True, False])
def test_the_tls_promise_follows_automatic_issuing(server, owner, settings, auto):
    """With PANEL_ACME_AUTO the wizard says the panel orders the certificate; without it,
    it says automatic certificates are off and, unless one is requested, promises no HTTPS
    (nor an HTTPS redirect that would never happen)."""
    settings.PANEL_ACME_AUTO = auto
    c = login(owner)
    data = {**fields(server, https_redirect="on"), "step": "2", "go": "3"}
    html = c.post("/websites/add/", data, **HX).content.decode()
    review = html[html.index('data-testid="review-https"') :].split("</dd>")[0]
    if auto:
        assert 'data-testid="tls-auto"' in html and 'data-testid="tls-manual"' not in html
        assert 'name="tls"' not in html  # nothing to tick: the panel orders it
        assert "Certificate ordered once the names point at web1" in review
    else:
        assert 'data-testid="tls-manual"' in html and "Automatic certificates are off" in html
        assert "ordered" not in review
        assert "No certificate: HTTP only" in review
        assert "only once a certificate is live" in review
        html = c.post("/websites/add/", {**data, "tls": "on"}, **HX).content.decode()
        review = html[html.index('data-testid="review-https"') :].split("</dd>")[0]
        assert "Certificate requested after creation" in review


def test_without_javascript_the_page_is_one_form(server, owner):
    c = login(owner)
    resp = c.post("/websites/add/", fields(server, domain="x.com{"))
    html = resp.content.decode()
    assert resp.status_code == 400 and "<html" in html and 'value="x.com{"' in html
    assert 'class="wizard-nojs' in html  # the single Create button
    resp = c.post("/websites/add/", fields(server))
    assert resp.status_code == 302 and Website.objects.filter(domain="shop.wizard.test").exists()


def test_outsiders_and_support_cannot_reach_it(server, support):
    assert login(support).get("/websites/add/").status_code == 404
    assert login(support).post("/websites/add/", {"go": "1"}).status_code == 404
