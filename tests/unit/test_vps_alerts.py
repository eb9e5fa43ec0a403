"""Alert rules on VPS figures: a ``vps_metric`` rule fires for a running VPS whose samples
held past the threshold for the rule's duration, only for VPSes the rule's owner may see,
and resolves when the figure falls back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import services as monitoring
from monitoring.alerts import evaluate_alerts
from servers.models import Server
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


def test_window_must_be_covered_and_metric_known(customer, vpses):
    mine, _ = vpses
    now = timezone.now().replace(microsecond=0)
    _samples(mine, now, [95, 96])  # 60 s of samples for a 300 s rule
    for metric in ("cpu", "nonsense"):
        monitoring.do_create_rule(
            actor=customer,
            data={
                "name": f"r-{metric}",
                "kind": "vps_metric",
                "metric": metric,
                "comparison": ">",
                "threshold": 90,
                "duration": 300,
            },
        )
    assert evaluate_alerts(now=now).fired == []
