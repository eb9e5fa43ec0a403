"""Alerts about sites and certificates: a failed site, a crashed app and a certificate that
could not be issued fire for their owner (not for anyone else) and resolve once fixed."""

from __future__ import annotations

import pytest

from monitoring import services
from monitoring.alerts import evaluate_alerts
from servers.models import Server
from websites.certificates.models import Certificate
from websites.models import Website

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(reseller, customer):
    server = Server.objects.create(name="web", address="93.184.216.34", owner=reseller)
    return Website.objects.create(domain="shop.example", server=server, owner=customer)


def test_failed_and_crashed_sites(site, customer, mallory):
    services.do_create_rule(actor=customer, data={"name": "sites", "kind": "site_failing"})
    services.do_create_rule(actor=mallory, data={"name": "sites", "kind": "site_failing"})
    assert evaluate_alerts().fired == []
    Website.objects.filter(pk=site.pk).update(status="failed", status_message="nginx -t: bad")
    fired = evaluate_alerts().fired
    assert [(a.rule.owner, a.message) for a in fired] == [(customer, "shop.example: nginx -t: bad")]
    Website.objects.filter(pk=site.pk).update(status="active", kind="node", app_state="crashed")
    result = evaluate_alerts()
    assert result.fired == [] and result.resolved == []  # the same site: still failing
    Website.objects.filter(pk=site.pk).update(app_running=False)  # stopped on purpose
    assert [a.label for a in evaluate_alerts().resolved] == ["shop.example"]


def test_certificates_that_could_not_be_issued(site, customer, mallory):
    cert = Certificate.objects.create(website=site, domains="shop.example", status="active")
    services.do_create_rule(actor=customer, data={"name": "tls", "kind": "certificate_failing"})
    services.do_create_rule(actor=mallory, data={"name": "tls", "kind": "certificate_failing"})
    assert evaluate_alerts().fired == []
    Certificate.objects.filter(pk=cert.pk).update(last_error="urn:ietf:params:acme:error:dns")
    fired = evaluate_alerts().fired
    assert len(fired) == 1 and fired[0].rule.owner == customer
    assert "acme:error:dns" in fired[0].message  # the ACME server's own words
    Certificate.objects.filter(pk=cert.pk).update(last_error="")
    assert len(evaluate_alerts().resolved) == 1
