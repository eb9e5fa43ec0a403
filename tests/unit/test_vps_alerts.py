"""Alert rules on VPS figures: a ``vps_metric`` rule fires for a running VPS whose samples
held past the threshold for the rule's duration, only for VPSes the rule's owner may see,
and resolves when the figure falls back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.models import AuditEntry
from monitoring import services as monitoring
from monitoring.alerts import evaluate_alerts
from monitoring.models import AlertRule
from servers.models import Server
from tests.conftest import login
from vps.models import Hypervisor, Vps, VpsPlan, VpsSample

pytestmark = pytest.mark.django_db


@pytest.fixture
def vpses(admin_user, customer, mallory):
    server = Server.objects.create(
        name="hv", address="198.51.100.10", transport="local", owner=admin_user
    )
    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    plan = VpsPlan.objects.create(name="Small")
    mine = Vps.objects.create(
        hostname="busy", owner=customer, plan=plan, hypervisor=hv, state="running"
    )
    theirs = Vps.objects.create(
        hostname="other", owner=mallory, plan=plan, hypervisor=hv, state="running"
    )
    return mine, theirs


def _samples(vps, now, cpus):
    VpsSample.objects.bulk_create(
        [
            VpsSample(
                vps=vps, at=now - timedelta(seconds=60 * (len(cpus) - 1 - i)), values={"cpu": c}
            )
            for i, c in enumerate(cpus)
        ]
    )


def test_vps_metric_rule_fires_and_resolves(customer, vpses):
    mine, theirs = vpses
    now = timezone.now().replace(microsecond=0)
    _samples(mine, now, [95, 96, 97, 98])
    _samples(theirs, now, [99, 99, 99, 99])
    monitoring.do_create_rule(
        actor=customer,
        data={
            "name": "VPS CPU",
            "kind": "vps_metric",
            "metric": "cpu",
            "comparison": ">",
            "threshold": 90,
            "duration": 120,
        },
    )
    fired = evaluate_alerts(now=now).fired
    assert [(a.subject, a.label) for a in fired] == [(f"vps:{mine.uuid.hex}", "busy")]
    assert "cpu is 98" in fired[0].message
    # The figure falls back: resolved.
    VpsSample.objects.create(vps=mine, at=now + timedelta(seconds=60), values={"cpu": 20})
    result = evaluate_alerts(now=now + timedelta(seconds=61))
    assert [a.subject for a in result.resolved] == [f"vps:{mine.uuid.hex}"]


def test_window_must_be_covered(customer, vpses):
    mine, _ = vpses
    now = timezone.now().replace(microsecond=0)
    _samples(mine, now, [95, 96])  # 60 s of samples for a 300 s rule
    monitoring.do_create_rule(
        actor=customer,
        data={
            "name": "r-cpu",
            "kind": "vps_metric",
            "metric": "cpu",
            "comparison": ">",
            "threshold": 90,
            "duration": 300,
        },
    )
    assert evaluate_alerts(now=now).fired == []


def test_unknown_metric_refused_by_the_service_and_ignored_if_stored(customer, vpses):
    mine, _ = vpses
    now = timezone.now().replace(microsecond=0)
    _samples(mine, now, [95, 96])
    data = {"name": "r", "kind": "vps_metric", "comparison": ">", "threshold": 90}
    # A server metric is not a VPS figure (and the reverse): field errors.
    for kind, metric in (("vps_metric", "load1"), ("vps_metric", ""), ("metric", "mem_total")):
        with pytest.raises(ValidationError) as exc:
            monitoring.do_create_rule(actor=customer, data={**data, "kind": kind, "metric": metric})
        assert "metric" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        monitoring.do_create_rule(actor=customer, data={**data, "metric": "cpu", "threshold": None})
    assert "threshold" in exc.value.message_dict
    # A rule stored before the check (or by hand) with an unknown figure stays quiet.
    AlertRule.objects.create(owner=customer, name="old", kind="vps_metric", metric="nonsense")
    assert evaluate_alerts(now=now).fired == []


def test_portal_form_creates_a_vps_metric_rule(customer, vpses):
    client = login(customer)
    page = client.get("/monitoring/rules/new/").content.decode()
    # The VPS figures have their own list, shown for the vps_metric kind only.
    assert 'name="metric_vps_metric"' in page and 'data-show-for="vps_metric"' in page
    assert '<option value="mem_total">' in page
    form = {
        "name": "VPS memory",
        "kind": "vps_metric",
        "metric": "",
        "metric_vps_metric": "mem_pct",
        "comparison": ">",
        "threshold": "90",
        "duration": "300",
        "scope": "all",
        "days": "14",
        "enabled": "on",
    }
    resp = client.post("/monitoring/rules/new/", form)
    assert resp.status_code == 302, resp.content.decode()
    rule = AlertRule.objects.get(name="VPS memory")
    assert (rule.kind, rule.metric, rule.threshold, rule.duration) == (
        "vps_metric",
        "mem_pct",
        90,
        300,
    )
    assert AuditEntry.objects.filter(action="monitoring.rule.create", actor_id=customer.pk).exists()
    # Its page shows the VPS figure chosen, on the VPS list.
    edit = client.get(f"/monitoring/rules/{rule.uuid}/").content.decode()
    assert '<option value="mem_pct" selected>' in edit


@pytest.mark.parametrize("metric", ["nonsense", "load1"])
def test_portal_form_refuses_a_bad_vps_metric(customer, vpses, metric):
    client = login(customer)
    form = {
        "name": "bad",
        "kind": "vps_metric",
        # A server metric in the servers' field does not stand in for the VPS one.
        "metric": metric if metric == "load1" else "",
        "metric_vps_metric": metric if metric == "nonsense" else "",
        "comparison": ">",
        "threshold": "90",
        "duration": "0",
        "scope": "all",
        "days": "14",
        "enabled": "on",
    }
    resp = client.post("/monitoring/rules/new/", form)
    assert resp.status_code == 400
    errors = resp.context["form"].errors
    assert list(errors) == ["metric_vps_metric"], errors
    assert not AlertRule.objects.filter(name="bad").exists()
