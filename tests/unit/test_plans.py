"""Hosting plans: limits with clear messages, resellers within their own plan, visibility."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from servers.models import Server
from tests.conftest import login, make_user
from websites import plans, services
from websites.models import Plan, SystemAccount, Website


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
    with pytest.raises(
        ValidationError,
        match=r"Your reseller's plan \(Reseller\) allows 2 websites for all its customers "
        "together; they have 2 together",
    ):
        plans.enforce_limit(customer, "websites", actor=customer)


def _pooled(admin_user, reseller, **limits):
    parent = plans.do_create_plan(actor=admin_user, data={"name": "Pool", **limits})
    plans.do_subscribe(reseller, parent, actor=admin_user)
    return parent


def test_the_reseller_acting_for_a_customer_without_a_plan_stays_in_its_pool(
    admin_user, reseller, customer, server
):
    """A customer without a plan is not limited by a plan of its own when its reseller acts,
    but the reseller's own plan still holds for all of them together."""
    _pooled(admin_user, reseller, websites=2)
    _sites(reseller, server, 1)
    other = make_user("second@example.com", "customer", reseller=reseller)
    _sites(other, server, 1, prefix="o")
    with pytest.raises(ValidationError, match=r"Your reseller's plan \(Pool\) allows 2 websites"):
        plans.enforce_limit(customer, "websites", actor=reseller)
    # Through the service too: nothing is created.
    with pytest.raises(ValidationError, match="allows 2 websites for all its customers"):
        services.do_create_website(
            actor=reseller,
            data={"domain": "third.example.com", "server": server, "owner": customer},
        )
    assert not Website.objects.filter(domain="third.example.com").exists()


def test_the_resellers_own_sites_count_with_its_customers(admin_user, reseller, customer, server):
    _pooled(admin_user, reseller, websites=3)
    _sites(customer, server, 3)
    with pytest.raises(
        ValidationError,
        match="Your plan allows 3 websites for you and your customers together; you have 3",
    ):
        plans.enforce_limit(reseller, "websites", actor=reseller)


def test_databases_and_disk_are_pooled_too(admin_user, reseller, customer, server, monkeypatch):
    _pooled(admin_user, reseller, databases=1, disk_mb=100)
    child = plans.do_create_plan(
        actor=reseller, data={"name": "Child", "databases": 1, "disk_mb": 100}
    )
    plans.do_subscribe(customer, child, actor=reseller)
    # One database held by the reseller fills the pool (the counter counts a row per user).
    monkeypatch.setitem(
        plans._counters, "databases", lambda owners: owners.filter(pk=reseller.pk).count()
    )
    with pytest.raises(ValidationError, match=r"\(Pool\) allows 1 database for all"):
        plans.enforce_limit(customer, "databases", actor=customer)
    # Disk is measured: creating is refused once the pool is over, not at the limit.
    _sites(customer, server, 1)
    acct = SystemAccount.objects.create(server=server, user=customer, name=customer.account_name)
    SystemAccount.objects.filter(pk=acct.pk).update(disk_used_mb=100)
    plans.enforce_limit(customer, "disk_mb", actor=customer, adding=0)
    other = SystemAccount.objects.create(server=server, user=reseller, name=reseller.account_name)
    SystemAccount.objects.filter(pk=other.pk).update(disk_used_mb=1)
    theirs = Server.objects.create(name="r1", address="93.184.216.35", owner=reseller)
    with pytest.raises(ValidationError, match="allows 100 MB of disk for all its customers"):
        services.do_create_website(
            actor=customer,
            data={"domain": "more.example.com", "server": theirs, "owner": customer},
        )


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
