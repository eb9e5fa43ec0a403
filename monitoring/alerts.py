"""The alert engine and its plug-in seam.

A *source* says, for one rule, which subjects are in a bad state right now. Monitoring
brings the built-in ones (metric, server offline, check failing, certificate expiring);
other apps add theirs from their ``AppConfig.ready()`` without monitoring importing them::

    from monitoring.alerts import Finding, register_source

    def backup_missing(rule, now):
        for job in restrict(BackupJob, rule.owner).filter(last_success__lt=now - ...):
            yield Finding(subject=f"backup:{job.uuid.hex}", label=job.name, message="...")

    register_source("backup_missing", backup_missing, label="Backup missing")

``evaluate_alerts()`` (after each collection round, and every minute) compares each enabled
rule's findings with its open alerts: a new subject fires, a subject no longer found
resolves. One firing alert per rule and subject (a database constraint keeps it so).
A source only ever sees what the rule's owner may see (``restrict(..., rule.owner)``).
"""

from __future__ import annotations

import logging
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.utils import timezone

from core.policy import restrict
from monitoring.models import Alert, AlertRule, Sample
from servers.models import Server

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    subject: str  # stable key, e.g. "server:<uuid hex>"
    label: str  # what it is about, for people ("web1", "shop.example.com")
    message: str
    value: float | None = None
    server_id: int | None = None


Evaluate = Callable[[AlertRule, datetime], Iterable[Finding]]


@dataclass(frozen=True)
class Source:
    kind: str
    label: str
    evaluate: Evaluate
    uses_servers: bool = False  # the rule's scope (all, server, location) applies
    # The figures a rule of this kind may name (its metric, threshold, comparison and
    # duration then apply); empty for kinds without them. The built-in "metric" kind's are
    # monitoring.services.METRIC_NAMES.
    metrics: tuple[str, ...] = ()


_sources: dict[str, Source] = {}


def register_source(
    kind: str,
    evaluate: Evaluate,
    *,
    label: str,
    uses_servers: bool = False,
    metrics: Iterable[str] = (),
):
    """Add (or replace, as ready() may run twice) the source of alert rules of ``kind``.
    ``metrics``: the figures its rules may watch (validated on save, offered on the form)."""
    if not kind.replace("_", "").isalnum() or len(kind) > 32:
        raise ValueError(f"bad alert kind {kind!r}")
    _sources[kind] = Source(kind, label, evaluate, uses_servers, tuple(metrics))


def sources() -> dict[str, Source]:
    return dict(_sources)


def kind_choices() -> list[tuple[str, str]]:
    return [(s.kind, s.label) for s in sorted(_sources.values(), key=lambda s: s.label)]


def servers_in_scope(rule: AlertRule):
    """The servers a rule watches: what its owner may see, narrowed by its scope."""
    qs = restrict(Server, rule.owner)
    if rule.scope == AlertRule.Scope.SERVER:
        return qs.filter(pk=rule.server_id)
    if rule.scope == AlertRule.Scope.LOCATION:
        return qs.filter(location=rule.location)
    return qs


# --- built-in sources -----------------------------------------------------------------

COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def metric_source(rule: AlertRule, now: datetime) -> Iterable[Finding]:
    """Every sample of the last ``duration`` seconds is past the threshold (with no duration:
    the newest one). The window must be covered: a server that only just started reporting
    has not held the condition for the whole duration yet."""
    compare = COMPARE[rule.comparison]
    servers = {s.pk: s for s in servers_in_scope(rule).exclude(status=Server.Status.OFFLINE)}
    if not servers or rule.threshold is None:
        return
    interval = settings.PANEL_MONITORING_INTERVAL
    since = now - timedelta(seconds=rule.duration + interval)
    rows = (
        Sample.objects.filter(server_id__in=list(servers), at__gte=since, at__lte=now)
        .order_by("server_id", "at")
        .values_list("server_id", "at", "values")
    )
    by_server: dict[int, list[tuple[datetime, float | None]]] = defaultdict(list)
    for server_id, at, values in rows:
        by_server[server_id].append((at, (values or {}).get(rule.metric)))
    for server_id, points in by_server.items():
        if rule.duration:
            held_from = now - timedelta(seconds=rule.duration)
            window = [p for p in points if p[0] >= held_from]
            covered = points[0][0] <= held_from + timedelta(seconds=interval / 2)
        else:
            window, covered = points[-1:], True
        values = [v for _at, v in window]
        if (
            not covered
            or not values
            or any(v is None or not compare(v, rule.threshold) for v in values)
        ):
            continue
        server, latest = servers[server_id], values[-1]
        yield Finding(
            subject=f"server:{server.uuid.hex}",
            label=server.name,
            message=f"{rule.metric} is {latest:g} ({rule.get_comparison_display()} "
            f"{rule.threshold:g}" + (f" for {rule.duration}s)" if rule.duration else ")"),
            value=latest,
            server_id=server.pk,
        )


def offline_source(rule: AlertRule, now: datetime) -> Iterable[Finding]:
    for server in servers_in_scope(rule).filter(status=Server.Status.OFFLINE):
        yield Finding(
            subject=f"server:{server.uuid.hex}",
            label=server.name,
            message=f"{server.name} does not answer the collector.",
            server_id=server.pk,
        )


def certificate_source(rule: AlertRule, now: datetime) -> Iterable[Finding]:
    """Certificates of the owner's websites whose end is within ``days`` (read through the
    certificates app's model and the policy; nothing when that app is not installed)."""
    if not apps.is_installed("websites.certificates"):
        return
    certificate = apps.get_model("certificates", "Certificate")
    soon = now + timedelta(days=rule.days)
    qs = restrict(certificate, rule.owner).filter(not_after__isnull=False, not_after__lte=soon)
    for cert in qs.select_related("website"):
        days = (cert.not_after - now).total_seconds() / 86400
        when = f"expires in {days:.0f} days" if days >= 0 else "has expired"
        yield Finding(
            subject=f"certificate:{cert.uuid.hex}",
            label=cert.website.domain,
            message=f"The certificate of {cert.website.domain} {when}.",
            value=round(days, 1),
            server_id=cert.website.server_id,
        )


register_source("metric", metric_source, label="Metric threshold", uses_servers=True)
register_source("server_offline", offline_source, label="Server offline", uses_servers=True)
register_source("certificate_expiring", certificate_source, label="Certificate expiring")


# --- the engine -----------------------------------------------------------------------


@dataclass
class EvaluationResult:
    fired: list[Alert]
    resolved: list[Alert]
    errors: dict[str, str]


def evaluate_alerts(now: datetime | None = None) -> EvaluationResult:
    """Compare every enabled rule's findings with its firing alerts (see the module doc)."""
    from monitoring import services  # services imports this module for the kind list

    now = now or timezone.now()
    result = EvaluationResult([], [], {})
    rules = list(AlertRule.objects.filter(enabled=True).select_related("owner"))
    firing: dict[int, dict[str, Alert]] = defaultdict(dict)
    for alert in Alert.objects.filter(state=Alert.State.FIRING, rule__enabled=True):
        firing[alert.rule_id][alert.subject] = alert
    # Servers in maintenance (a window or a person): nothing about them fires, and what
    # was firing before stays as it is until the maintenance ends (then it is evaluated
    # again and notifies if the condition still holds).
    resting = set(
        Server.objects.filter(status=Server.Status.MAINTENANCE).values_list("pk", flat=True)
    )
    for rule in rules:
        source = _sources.get(rule.kind)
        if source is None:
            continue  # the app that registered it is gone: leave its alerts as they are
        try:
            findings = {f.subject: f for f in source.evaluate(rule, now)}
        except Exception as exc:  # one broken source must not stop the others
            log.exception("alert source %s failed for rule %s", rule.kind, rule.pk)
            result.errors[rule.name] = str(exc) or exc.__class__.__name__
            continue
        open_alerts = firing.get(rule.pk, {})
        for subject, finding in findings.items():
            if finding.server_id in resting:
                continue
            if subject not in open_alerts:
                alert = services.fire_alert(rule, finding, now=now)
                if alert is not None:
                    result.fired.append(alert)
        for subject, alert in open_alerts.items():
            if subject not in findings and alert.server_id not in resting:
                result.resolved.append(services.resolve_alert(alert, now=now))
    return result


def held_past_threshold(
    rule: AlertRule, rows: Iterable[tuple], now: datetime, interval: float
) -> Iterable[tuple]:
    """The metric-over-window test of ``metric_source`` for any samples: ``rows`` are
    ``(key, at, values)`` ordered by key and time, from ``now - (rule.duration + interval)``
    on (``interval``: the samples' spacing). Yields ``(key, latest value)`` for every key
    whose samples of the last ``duration`` seconds are all past the threshold (with no
    duration: the newest one), the window covered by samples. The VPS statistics'
    ``vps_metric`` rules use it (vps/alerts.py)."""
    compare = COMPARE[rule.comparison]
    by_key: dict = defaultdict(list)
    for key, at, values in rows:
        by_key[key].append((at, (values or {}).get(rule.metric)))
    for key, points in by_key.items():
        if rule.duration:
            held_from = now - timedelta(seconds=rule.duration)
            window = [p for p in points if p[0] >= held_from]
            covered = points[0][0] <= held_from + timedelta(seconds=interval / 2)
        else:
            window, covered = points[-1:], True
        values = [v for _at, v in window]
        if covered and values and all(v is not None and compare(v, rule.threshold) for v in values):
            yield key, values[-1]
