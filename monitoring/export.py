"""``/metrics``: the panel's state in Prometheus' text format, so an existing Prometheus
(and Grafana) can take over large fleets. Protected by a bearer token whose SHA-256 is
``PANEL_METRICS_TOKEN_SHA256``; without it the endpoint does not exist (404).

One request costs a handful of queries, whatever the fleet size: a registry is built per
request from a custom collector (no global state shared between processes)."""

from __future__ import annotations

import hashlib
import hmac
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from core import health
from core.models import Operation
from monitoring.models import Alert, Check, ServerMonitor
from servers.models import Server

log = logging.getLogger(__name__)


class PanelCollector:
    def collect(self):
        found = health.checks()
        up = GaugeMetricFamily(
            "panel_component_up", "Panel components (1 healthy)", labels=["component"]
        )
        for name, result in sorted(found.items()):
            up.add_metric([name], 1.0 if result["ok"] else 0.0)
        yield up

        queue = GaugeMetricFamily("panel_queue_depth", "Tasks waiting for a worker")
        try:
            from django_q.brokers import get_broker

            queue.add_metric([], float(get_broker().queue_size()))
        except Exception:  # noqa: BLE001 - a broker that cannot answer is shown as absent
            log.warning("queue depth unavailable", exc_info=True)
        yield queue

        ops = GaugeMetricFamily("panel_operations", "Operations by state", labels=["state"])
        counts = dict(Operation.objects.values_list("state").annotate(n=Count("id")))
        for state, _label in Operation.State.choices:
            ops.add_metric([state], float(counts.get(state, 0)))
        yield ops

        alerts = GaugeMetricFamily("panel_alerts_firing", "Alerts firing now")
        alerts.add_metric([], float(Alert.objects.filter(state=Alert.State.FIRING).count()))
        yield alerts

        yield from _servers()
        yield from _checks()


def _servers():
    status = GaugeMetricFamily(
        "panel_server_status", "1 for the server's current status", labels=["server", "status"]
    )
    value = GaugeMetricFamily(
        "panel_server_metric", "Newest collected value", labels=["server", "metric"]
    )
    seen = GaugeMetricFamily(
        "panel_server_last_sample_timestamp_seconds",
        "When the newest sample was taken",
        labels=["server"],
    )
    monitors = {
        m.server_id: m
        for m in ServerMonitor.objects.only("server_id", "state", "old_latest", "last_sample_at")
    }
    for server in Server.objects.only("pk", "name", "status").order_by("name"):
        status.add_metric([server.name, server.status], 1.0)
        monitor = monitors.get(server.pk)
        if monitor is None:
            continue
        for metric, number in sorted((monitor.latest or {}).items()):
            if isinstance(number, int | float):
                value.add_metric([server.name, metric], float(number))
        if monitor.last_sample_at:
            seen.add_metric([server.name], monitor.last_sample_at.timestamp())
    yield from (status, value, seen)


def _checks():
    up = GaugeMetricFamily(
        "panel_check_up", "1 up, 0 down (unknown: absent)", labels=["check", "kind", "owner"]
    )
    took = GaugeMetricFamily(
        "panel_check_response_seconds",
        "Last run's response time",
        labels=["check", "kind", "owner"],
    )
    tls = GaugeMetricFamily(
        "panel_check_tls_days_left",
        "Days the certificate is still valid",
        labels=["check", "kind", "owner"],
    )
    for check in Check.objects.filter(enabled=True).select_related("owner").order_by("id"):
        labels = [f"{check.name} ({check.uuid.hex[:8]})", check.kind, check.owner.email]
        if check.status != Check.Status.UNKNOWN:
            up.add_metric(labels, 1.0 if check.status == Check.Status.UP else 0.0)
        if check.last_response_ms is not None:
            took.add_metric(labels, check.last_response_ms / 1000)
        if check.tls_days_left is not None:
            tls.add_metric(labels, check.tls_days_left)
    yield from (up, took, tls)


def token_ok(header: str) -> bool:
    expected = (settings.PANEL_METRICS_TOKEN_SHA256 or "").strip().lower()
    scheme, _, token = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not token:
        return False
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    return hmac.compare_digest(digest, expected)


@login_not_required
@never_cache
@require_GET
def metrics(request):
    if not settings.PANEL_METRICS_TOKEN_SHA256:
        raise Http404
    if not token_ok(request.headers.get("Authorization", "")):
        response = HttpResponse(
            "A bearer token is needed.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PanelCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
