"""Over quota (websites/quota.py): the ``disk_over_quota`` alert fires and resolves with the
measured disk use (real ``du`` over the local transport), plans with
``suspend_over_quota`` suspend the owner's sites through the suspend Operation (audited),
and only a suspension the quota made is lifted when back under."""

from __future__ import annotations

import pytest

from core.models import AuditEntry, Operation
from monitoring import services as monitoring
from monitoring.alerts import evaluate_alerts
from servers.models import Server
from websites import plans, quota, services
from websites.models import SiteTraffic, SystemAccount, Website
from websites.tasks import measure_disk

pytestmark = pytest.mark.django_db
MB = 1024 * 1024


@pytest.fixture
def server(admin_user, tmp_path):
    return Server.objects.create(
        name="local-web",
        address="127.0.0.1",
        transport=Server.Transport.LOCAL,
        owner=admin_user,
        profile={"webroot_base": str(tmp_path)},
    )


@pytest.fixture
def hosted(server, customer, admin_user, tmp_path):
    """The customer on a 2 MB plan that suspends, with two sites and a measured home."""
    plan = plans.do_create_plan(
        actor=admin_user, data={"name": "Tiny", "disk_mb": 2, "suspend_over_quota": True}
    )
    plans.do_subscribe(customer, plan, actor=admin_user)
    account = SystemAccount.objects.create(server=server, user=customer, name=customer.account_name)
    sites = [
        Website.objects.create(domain=d, server=server, owner=customer, status="active")
        for d in ("a.quota.test", "b.quota.test")
    ]
    home = tmp_path / account.name
    home.mkdir()
    return {"plan": plan, "account": account, "sites": sites, "home": home}


def _fill(home, mb: int) -> None:
    (home / "big.bin").write_bytes(b"\1" * (mb * MB))  # written bytes: du counts them


def _suspended() -> dict[str, tuple[bool, bool, str]]:
    return {
        s.domain: (s.suspended, s.suspended_for_quota, s.suspension_reason)
        for s in Website.objects.order_by("domain")
    }


def test_alert_fires_and_resolves_with_the_measured_disk(hosted, customer, reseller):
    plans.do_update_plan(hosted["plan"], actor=None, data={"suspend_over_quota": False})
    monitoring.do_create_rule(actor=reseller, data={"name": "quota", "kind": "disk_over_quota"})
    _fill(hosted["home"], 3)
    assert measure_disk() == 1
    assert SystemAccount.objects.get().disk_used_mb >= 3
    fired = evaluate_alerts().fired
    assert [a.label for a in fired] == [customer.email]
    assert "MB of disk; the plan allows 2" in fired[0].message
    assert fired[0].subject == f"quota:{customer.uuid.hex}"
    assert not Website.objects.filter(suspended=True).exists()  # this plan only alerts
    (hosted["home"] / "big.bin").unlink()
    measure_disk()
    assert [a.pk for a in evaluate_alerts().resolved] == [fired[0].pk]


def test_alert_rules_see_only_their_owners_customers(hosted, mallory):
    monitoring.do_create_rule(actor=mallory, data={"name": "quota", "kind": "disk_over_quota"})
    SystemAccount.objects.update(disk_used_mb=50)
    assert evaluate_alerts().fired == []


def test_bandwidth_over_the_plan_is_over_quota(hosted, customer):
    plan = plans.do_update_plan(hosted["plan"], actor=None, data={"bandwidth_gb": 1})
    from websites.bandwidth import this_month

    SiteTraffic.objects.create(website=hosted["sites"][0], month=this_month(), bytes=3 * 10**9)
    found = quota.excesses(customer, plan)
    assert [(e.resource, e.used, e.limit) for e in found] == [("bandwidth_gb", 3, 1)]
    assert found[0].reason == "over bandwidth quota"


def test_over_quota_suspends_through_the_operation_and_lifts_only_its_own(
    hosted, admin_user, django_capture_on_commit_callbacks
):
    a, b = hosted["sites"]
    _fill(hosted["home"], 3)
    with django_capture_on_commit_callbacks(execute=False):
        measure_disk()
    assert _suspended() == {
        "a.quota.test": (True, True, "over disk quota"),
        "b.quota.test": (True, True, "over disk quota"),
    }
    ops = Operation.objects.filter(kind="website.suspend")
    assert sorted(op.target_label for op in ops) == ["a.quota.test", "b.quota.test"]
    entries = AuditEntry.objects.filter(action="website.suspend")
    assert entries.count() == 2
    assert all(e.changes["reason"] == "over disk quota" for e in entries)
    # Staff take over b's suspension: it is theirs now and stays when back under.
    services.do_suspend_website(
        Website.objects.get(pk=b.pk), actor=admin_user, reason="abuse report"
    )
    # A second measurement over quota changes nothing.
    with django_capture_on_commit_callbacks(execute=False):
        assert quota.enforce_quotas() == {"suspended": 0, "unsuspended": 0}
    (hosted["home"] / "big.bin").unlink()
    with django_capture_on_commit_callbacks(execute=False):
        measure_disk()
    assert _suspended() == {
        "a.quota.test": (False, False, ""),
        "b.quota.test": (True, False, "abuse report"),
    }
    assert Operation.objects.filter(kind="website.unsuspend").count() == 1
    lifted = AuditEntry.objects.get(action="website.unsuspend")
    assert lifted.changes["suspended_for_quota"] == [True, False]


def test_plans_that_do_not_suspend_leave_sites_alone(hosted):
    plans.do_update_plan(hosted["plan"], actor=None, data={"suspend_over_quota": False})
    SystemAccount.objects.update(disk_used_mb=50)
    assert quota.enforce_quotas() == {"suspended": 0, "unsuspended": 0}
    assert not Website.objects.filter(suspended=True).exists()


def test_a_staff_suspension_is_never_lifted_by_the_quota(hosted, admin_user):
    a = hosted["sites"][0]
    services.do_suspend_website(a, actor=admin_user, reason="unpaid")
    SystemAccount.objects.update(disk_used_mb=0)
    quota.enforce_quotas()
    assert Website.objects.get(pk=a.pk).suspended
