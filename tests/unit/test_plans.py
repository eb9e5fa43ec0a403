"""Hosting plans: limits with clear messages, resellers within their own plan, visibility."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from servers.models import Server
from tests.conftest import login, make_user
from websites import plans
from websites.models import Plan, Website


@pytest.fixture
def server(db, admin_user):
    return Server.objects.create(name="web1", address="93.184.216.34", owner=admin_user)


def _sites(owner, server, n, prefix="s"):
    for i in range(n):
        Website.objects.create(
            domain=f"{prefix}{i}.{owner.account_name}.test", server=server, owner=owner
        )


def test_limit_message_names_the_plan_and_the_count(admin_user, customer, server):
    plan = plans.do_create_plan(actor=admin_user, data={"name": "Small", "websites": 3})
    plans.do_subscribe(customer, plan, actor=admin_user)
    _sites(customer, server, 2)
    plans.enforce_limit(customer, "websites", actor=customer)  # the third fits
    _sites(customer, server, 1, prefix="t")
    with pytest.raises(ValidationError) as exc:
        plans.enforce_limit(customer, "websites", actor=customer)
    assert exc.value.messages == ["Your plan allows 3 websites; you have 3."]


def test_empty_limit_is_unlimited_and_unknown_resource_is_a_bug(admin_user, customer, server):
    plans.do_subscribe(
        customer, plans.do_create_plan(actor=admin_user, data={"name": "Big"}), actor=admin_user
    )
    _sites(customer, server, 5)
    plans.enforce_limit(customer, "websites", actor=customer)
    with pytest.raises(ValueError):
        plans.enforce_limit(customer, "cpus", actor=customer)


def test_without_subscription_only_staff_or_the_reseller_decide(admin_user, reseller, customer):
    mallory = make_user("lonely@example.com", "customer")
    with pytest.raises(ValidationError, match="no hosting plan"):
        plans.enforce_limit(mallory, "websites", actor=mallory)
    plans.enforce_limit(mallory, "websites", actor=admin_user)
    plans.enforce_limit(customer, "websites", actor=reseller)  # its own customer
    with pytest.raises(ValidationError):
        plans.enforce_limit(customer, "websites", actor=customer)
    plans.enforce_limit(admin_user, "websites", actor=admin_user)


def test_reseller_customers_share_the_resellers_plan(admin_user, reseller, customer, server):
    parent = plans.do_create_plan(actor=admin_user, data={"name": "Reseller", "websites": 2})
    plans.do_subscribe(reseller, parent, actor=admin_user)
    child = plans.do_create_plan(actor=reseller, data={"name": "Mine", "websites": 2})
    assert child.owner == reseller
    plans.do_subscribe(customer, child, actor=reseller)
    _sites(reseller, server, 1)
    _sites(customer, server, 1)
    with pytest.raises(ValidationError, match="Your reseller's plan allows 2 websites; you have 2"):
        plans.enforce_limit(customer, "websites", actor=customer)


def test_reseller_plans_stay_within_its_own(admin_user, reseller):
    parent = plans.do_create_plan(
        actor=admin_user,
        data={"name": "R", "websites": 10, "php_versions": "8.2", "sftp_allowed": False},
    )
    plans.do_subscribe(reseller, parent, actor=admin_user)
    with pytest.raises(ValidationError) as exc:
        plans.do_create_plan(
            actor=reseller,
            data={
                "name": "Too big",
                "websites": 11,
                "php_versions": "8.2 8.3",
                "sftp_allowed": True,
            },
        )
    assert set(exc.value.message_dict) == {"websites", "php_versions", "sftp_allowed"}
    with pytest.raises(ValidationError):  # unlimited is more than 10
        plans.do_create_plan(actor=reseller, data={"name": "Unl", "php_versions": "8.2"})
    ok = plans.do_create_plan(
        actor=reseller,
        data={"name": "Fits", "websites": 10, "php_versions": "8.2", "sftp_allowed": False},
    )
    assert ok.owner == reseller


def test_check_allowed(admin_user, customer):
    plan = plans.do_create_plan(
        actor=admin_user,
        data={"name": "PHP", "php_versions": "8.2", "kinds": "php static", "sftp_allowed": False},
    )
    plans.do_subscribe(customer, plan, actor=admin_user)
    plans.check_allowed(customer, kind="php", php_version="8.2")
    with pytest.raises(ValidationError, match="does not allow proxy sites"):
        plans.check_allowed(customer, kind="proxy")
    with pytest.raises(ValidationError, match="does not allow PHP 8.1"):
        plans.check_allowed(customer, php_version="8.1")
    with pytest.raises(ValidationError, match="SFTP"):
        plans.check_allowed(customer, sftp=True)


@pytest.mark.parametrize(
    "field,value", [("php_versions", "8.2;rm"), ("kinds", "php cobol"), ("name", "a\x00b")]
)
def test_bad_plan_values_are_refused(admin_user, field, value):
    with pytest.raises(ValidationError):
        plans.do_create_plan(
            actor=admin_user,
            data={"name": "x", field: value} if field != "name" else {"name": value},
        )


def test_subscription_rules(admin_user, reseller, customer):
    staff_plan = plans.do_create_plan(actor=admin_user, data={"name": "Staff"})
    mine = plans.do_create_plan(actor=reseller, data={"name": "Mine"})
    other = make_user("other-res@example.com", "reseller")
    theirs = plans.do_create_plan(actor=other, data={"name": "Theirs"})
    with pytest.raises(ValidationError):
        plans.do_subscribe(customer, staff_plan, actor=customer)
    with pytest.raises(ValidationError):
        plans.do_subscribe(customer, theirs, actor=reseller)
    with pytest.raises(ValidationError):
        plans.do_subscribe(customer, theirs, actor=admin_user)
    assert plans.do_subscribe(customer, mine, actor=reseller).plan == mine
    with pytest.raises(ValidationError, match="subscribed"):
        plans.do_delete_plan(mine, actor=reseller)
    plans.do_subscribe(customer, None, actor=reseller)
    plans.do_delete_plan(mine, actor=reseller)


def test_api_visibility_and_writes(admin_user, reseller, customer):
    staff_plan = plans.do_create_plan(actor=admin_user, data={"name": "Staff", "websites": 5})
    hidden = plans.do_create_plan(actor=admin_user, data={"name": "Hidden"})
    plans.do_subscribe(customer, staff_plan, actor=admin_user)
    c = login(customer)
    names = [p["name"] for p in c.get("/api/v1/plans/").json()["results"]]
    assert names == ["Staff"]
    assert c.get(f"/api/v1/plans/{hidden.uuid}/").status_code == 404
    assert (
        c.patch(
            f"/api/v1/plans/{staff_plan.uuid}/", {"websites": 50}, content_type="application/json"
        ).status_code
        == 404
    )
    assert (
        c.post("/api/v1/plans/", {"name": "Mine"}, content_type="application/json").status_code
        == 403
    )
    r = login(reseller)
    resp = r.post(
        "/api/v1/plans/",
        {"name": "Resold", "websites": 2, "price": "9.90"},
        content_type="application/json",
    )
    assert resp.status_code == 201, resp.content
    assert resp.json()["owner"] == str(reseller.uuid)
    assert [p["name"] for p in r.get("/api/v1/plans/").json()["results"]] == ["Resold"]
    resp = r.patch(
        f"/api/v1/plans/{resp.json()['uuid']}/",
        {"php_versions": "8.x"},
        content_type="application/json",
    )
    assert resp.status_code == 400
    a = login(admin_user)
    assert a.delete(f"/api/v1/plans/{staff_plan.uuid}/").status_code == 400  # subscribed
    assert a.delete(f"/api/v1/plans/{hidden.uuid}/").status_code == 204
    assert not Plan.objects.filter(pk=hidden.pk).exists()


def test_website_list_page(customer, mallory, server):
    _sites(customer, server, 3)
    _sites(mallory, server, 1, prefix="m")
    c = login(customer)
    page = c.get("/websites/").content.decode()
    assert page.count("site-") >= 3 and mallory.account_name not in page
    assert "s1." in c.get("/websites/?q=s1", HTTP_HX_REQUEST="true").content.decode()


@pytest.mark.parametrize("text", [";;{;};", "';;{;};'", "{;}", ";{}", "x;{};"])
def test_malformed_raw_directives_are_validation_errors(text):
    from websites.validators import validate_nginx_directives

    with pytest.raises(ValidationError):
        validate_nginx_directives(text)
