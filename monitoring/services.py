"""State changes of monitoring, audited in the same transaction."""

from __future__ import annotations

import ipaddress
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from core import audit, events
from core.policy import CHANGE, restrict
from core.redaction import redact_url
from core.services import accept_only, refuse_nul_in
from monitoring import notify
from monitoring.models import (
    Alert,
    AlertRule,
    Check,
    Delivery,
    MaintenanceWindow,
    NotificationChannel,
    ServerMonitor,
    StatusPage,
    split_host_port,
)
from servers.models import Server

# Metrics a rule may watch (docs/monitoring.md, "Metrics").
METRIC_NAMES = [
    "cpu",
    "cpu_iowait",
    "load1",
    "load5",
    "load15",
    "mem_pct",
    "swap_pct",
    "disk_pct",
    "disk_read",
    "disk_write",
    "net_rx",
    "net_tx",
    "procs",
]

MONITOR_FIELDS = ["method", "exporter_url", "enabled"]


@transaction.atomic
def do_update_monitor(monitor: ServerMonitor, *, actor, data: dict) -> ServerMonitor:
    """How a server is collected: agentless or node_exporter (with its URL), or not at all."""
    changes = {}
    for name in MONITOR_FIELDS:
        if name in data and getattr(monitor, name) != data[name]:
            changes[name] = [getattr(monitor, name), data[name]]
            setattr(monitor, name, data[name])
    if monitor.method == ServerMonitor.Method.NODE_EXPORTER and not monitor.exporter_url:
        raise ValidationError("Give node_exporter's /metrics URL.")
    monitor.full_clean()
    if changes:
        if "method" in changes or "exporter_url" in changes:
            monitor.counters = {}  # rates never mix two collectors' counters
        monitor.save()
        audit.record("monitoring.update", monitor.server, actor=actor, changes=changes)
    return monitor


# --- alert rules, alerts, channels, deliveries ------------------------------------------

RULE_FIELDS = [
    "name",
    "kind",
    "enabled",
    "metric",
    "comparison",
    "threshold",
    "duration",
    "scope",
    "server",
    "location",
    "days",
    "channels",
    "silenced_until",
]
CHANNEL_FIELDS = ["name", "kind", "target", "enabled"]
CHANNEL_SECRETS = ["secret"]
_CHAT_ID = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")
_BOT_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,80}")


def _set_fields(obj, data: dict, fields: list[str]) -> dict:
    changes = {}
    for name in fields:
        if name in data and name != "channels" and getattr(obj, name) != data[name]:
            changes[name] = audit.jsonable(getattr(obj, name)), audit.jsonable(data[name])
            setattr(obj, name, data[name])
    return {k: list(v) for k, v in changes.items()}


def _validate_rule(rule: AlertRule, actor, channels) -> None:
    from monitoring.alerts import sources

    source = sources().get(rule.kind)
    if source is None:
        raise ValidationError({"kind": f"Unknown kind {rule.kind!r}."})
    errors = {}
    metrics = METRIC_NAMES if rule.kind == "metric" else source.metrics
    if metrics:
        if rule.metric not in metrics:
            errors["metric"] = f"Choose one of: {', '.join(metrics)}."
        if rule.threshold is None:
            errors["threshold"] = "Give the threshold."
    if rule.duration > 86400:
        errors["duration"] = "At most a day (86400 seconds)."
    if source.uses_servers or rule.scope != AlertRule.Scope.ALL:
        if rule.scope == AlertRule.Scope.SERVER:
            if rule.server_id is None:
                errors["server"] = "Choose the server."
            elif not restrict(Server, rule.owner).filter(pk=rule.server_id).exists():
                errors["server"] = "No such server."
        elif rule.scope == AlertRule.Scope.LOCATION and not rule.location:
            errors["location"] = "Give the location."
    if rule.scope != AlertRule.Scope.SERVER:
        rule.server = None
    if channels is not None:
        mine = set(restrict(NotificationChannel, rule.owner).values_list("pk", flat=True))
        if any(c.pk not in mine for c in channels):
            errors["channels"] = "Choose channels of the rule's owner."
    if errors:
        raise ValidationError(errors)
    rule.full_clean(exclude=["owner"])


@transaction.atomic
def do_create_rule(*, actor, data: dict) -> AlertRule:
    accept_only(data, RULE_FIELDS)
    refuse_nul_in(data, ["name", "metric", "location"])
    data = dict(data)
    channels = data.pop("channels", None)
    rule = AlertRule(owner=actor)
    _set_fields(rule, data, RULE_FIELDS)
    _validate_rule(rule, actor, channels)
    rule.save()
    if channels is not None:
        rule.channels.set(channels)
    audit.record("monitoring.rule.create", rule, actor=actor, changes={"name": [None, rule.name]})
    return rule


@transaction.atomic
def do_update_rule(rule: AlertRule, *, actor, data: dict) -> AlertRule:
    accept_only(data, RULE_FIELDS)
    refuse_nul_in(data, ["name", "metric", "location"])
    data = dict(data)
    channels = data.pop("channels", None)
    changes = _set_fields(rule, data, RULE_FIELDS)
    _validate_rule(rule, actor, channels)
    rule.save()
    if channels is not None:
        rule.channels.set(channels)
        changes["channels"] = [None, sorted(c.name for c in channels)]
    if not rule.enabled:  # a rule switched off leaves nothing firing
        for alert in rule.alerts.filter(state=Alert.State.FIRING):
            resolve_alert(alert, now=timezone.now(), notify=False)
    audit.record("monitoring.rule.update", rule, actor=actor, changes=changes)
    return rule


@transaction.atomic
def do_delete_rule(rule: AlertRule, *, actor) -> None:
    audit.record("monitoring.rule.delete", rule, actor=actor)
    rule.delete()


def fire_alert(rule: AlertRule, finding, *, now) -> Alert | None:
    """A new firing alert (audited, announced, notified); None when one is already open
    (another evaluator got there first: the constraint keeps one per rule and subject)."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule,
                owner=rule.owner,
                kind=rule.kind,
                subject=finding.subject[:200],
                label=finding.label[:200],
                server_id=finding.server_id,
                message=finding.message,
                value=finding.value,
                started_at=now,
            )
            audit.record("monitoring.alert.firing", alert, changes={"state": [None, "firing"]})
            events.changed(alert)
            _notify(alert, "firing", now)
    except IntegrityError:
        return None
    return alert


@transaction.atomic
def resolve_alert(alert: Alert, *, now, notify: bool = True) -> Alert:
    # Conditional, so two evaluators never both resolve (and notify) the same alert.
    won = Alert.objects.filter(pk=alert.pk, state=Alert.State.FIRING).update(
        state=Alert.State.RESOLVED, resolved_at=now
    )
    alert.state, alert.resolved_at = Alert.State.RESOLVED, now
    if not won:
        return alert
    audit.record("monitoring.alert.resolved", alert, changes={"state": ["firing", "resolved"]})
    events.changed(alert)
    if notify:
        _notify(alert, "resolved", now)
    return alert


@transaction.atomic
def do_acknowledge_alert(alert: Alert, *, actor) -> Alert:
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = timezone.now(), actor
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
        audit.record("monitoring.alert.acknowledge", alert, actor=actor)
        events.changed(alert)
    return alert


@transaction.atomic
def do_silence_alert(alert: Alert, *, actor, data: dict) -> Alert:
    """No notifications about this alert until ``until`` (None lifts the silence)."""
    accept_only(data, ["until"])
    until = data.get("until")
    if until is not None and until <= timezone.now():
        raise ValidationError({"until": "Give a time in the future."})
    if until is not None and until > timezone.now() + timedelta(days=365):
        raise ValidationError({"until": "At most a year."})
    before = alert.silenced_until
    alert.silenced_until = until
    alert.save(update_fields=["silenced_until"])
    audit.record(
        "monitoring.alert.silence",
        alert,
        actor=actor,
        changes={"silenced_until": [audit.jsonable(before), audit.jsonable(until)]},
    )
    events.changed(alert)
    return alert


def is_silenced(alert: Alert, now) -> bool:
    """Silenced alerts stay open but send nothing: the alert's or rule's silence, or the
    server is in maintenance."""
    if alert.silenced_until and alert.silenced_until > now:
        return True
    if alert.rule.silenced_until and alert.rule.silenced_until > now:
        return True
    server = alert.server if alert.server_id else None
    return server is not None and server.status == Server.Status.MAINTENANCE


def _notify(alert: Alert, event: str, now) -> list[Delivery]:
    if is_silenced(alert, now):
        return []
    channels = alert.rule.channels.filter(enabled=True)
    deliveries = Delivery.objects.bulk_create(
        [Delivery(channel=c, alert=alert, event=event, created_at=now) for c in channels]
    )
    for delivery in deliveries:
        _enqueue_delivery(delivery)
    return deliveries


def _enqueue_delivery(delivery: Delivery) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("monitoring.tasks.deliver", delivery.pk, group="monitoring.deliver")
    )


def _validate_channel(channel: NotificationChannel) -> None:
    errors = {}
    kind = channel.kind
    if kind == NotificationChannel.Kind.EMAIL:
        try:
            validate_email(channel.target)
        except ValidationError:
            errors["target"] = "Give an email address."
    elif kind == NotificationChannel.Kind.WEBHOOK:
        try:
            URLValidator(schemes=["http", "https"])(channel.target)
        except ValidationError:
            errors["target"] = "Give the receiver's http:// or https:// URL."
    elif kind == NotificationChannel.Kind.TELEGRAM:
        if not _CHAT_ID.fullmatch(channel.target):
            errors["target"] = "Give the chat id (a number) or @channelname."
        if not _BOT_TOKEN.fullmatch(channel.secret or ""):
            errors["secret"] = "Give the bot token (123456:ABC...)."
    if errors:
        raise ValidationError(errors)
    channel.full_clean(exclude=["owner"])


@transaction.atomic
def do_create_channel(*, actor, data: dict) -> NotificationChannel:
    accept_only(data, CHANNEL_FIELDS + CHANNEL_SECRETS)
    refuse_nul_in(data, CHANNEL_FIELDS + CHANNEL_SECRETS)
    channel = NotificationChannel(owner=actor, secret=data.get("secret") or "")
    _set_fields(channel, data, CHANNEL_FIELDS)
    _validate_channel(channel)
    channel.save()
    audit.record(
        "monitoring.channel.create", channel, actor=actor, changes={"kind": [None, channel.kind]}
    )
    return channel


@transaction.atomic
def do_update_channel(channel: NotificationChannel, *, actor, data: dict) -> NotificationChannel:
    accept_only(data, CHANNEL_FIELDS + CHANNEL_SECRETS)
    refuse_nul_in(data, CHANNEL_FIELDS + CHANNEL_SECRETS)
    data = dict(data)
    if (
        data.get("target") == channel.redacted_target != channel.target
        and data.get("kind", channel.kind) == channel.kind
    ):
        # The redacted URL others are shown, sent back unchanged (a colleague's or staff's
        # form): keep the stored URL and its token.
        del data["target"]
    was_webhook = channel.kind == NotificationChannel.Kind.WEBHOOK
    changes = _set_fields(channel, data, CHANNEL_FIELDS)
    if "target" in changes:
        # The append-only chain keeps no token a webhook URL carries (path, query, user).
        before, after = changes["target"]
        is_webhook = channel.kind == NotificationChannel.Kind.WEBHOOK
        changes["target"] = [
            redact_url(before or "") if was_webhook else before,
            redact_url(after or "") if is_webhook else after,
        ]
    if data.get("secret"):  # blank keeps the stored secret
        channel.secret = data["secret"]
        changes["secret"] = ["***", "***"]
    _validate_channel(channel)
    channel.save()
    audit.record("monitoring.channel.update", channel, actor=actor, changes=changes)
    return channel


@transaction.atomic
def do_delete_channel(channel: NotificationChannel, *, actor) -> None:
    audit.record("monitoring.channel.delete", channel, actor=actor)
    channel.delete()


@transaction.atomic
def do_send_test(channel: NotificationChannel, *, actor) -> Delivery:
    """A test notice through the channel, delivered (and retried) like an alert's."""
    delivery = Delivery.objects.create(channel=channel, event="test")
    audit.record("monitoring.channel.test", channel, actor=actor)
    _enqueue_delivery(delivery)
    return delivery


def notice_for(delivery: Delivery) -> notify.Notice:
    alert = delivery.alert
    if alert is None:
        text = f"Test notification from the panel to {delivery.channel.name}."
        data = {"id": delivery.uuid.hex, "event": "test", "text": text}
        return notify.Notice("test", "Test notification", text, data, delivery.uuid.hex)
    what = "FIRING" if delivery.event == "firing" else "RESOLVED"
    title = f"[{what}] {alert.rule.name}: {alert.label}"
    data = {
        # Signed with the body (X-Panel-Delivery is not): receivers drop repeats by it.
        "id": delivery.uuid.hex,
        "event": delivery.event,
        "alert": alert.uuid.hex,
        "rule": alert.rule.name,
        "kind": alert.kind,
        "subject": alert.label,
        "message": alert.message,
        "value": alert.value,
        "started_at": alert.started_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "text": f"{title}\n{alert.message}",
    }
    return notify.Notice(delivery.event, title, data["text"], data, delivery.uuid.hex)


def deliver(delivery: Delivery, *, now=None) -> Delivery:
    """One attempt. A retryable failure is tried again after 30 s, 2, 8, 32 minutes ...
    until PANEL_ALERT_DELIVERY_ATTEMPTS; then, or for a permanent failure, ``failed``.

    The attempt is claimed first (one UPDATE: counted, and due again only after a lease),
    so two workers never send the same delivery at once, and a worker killed mid-send
    leaves it to ``retry_deliveries`` once the lease has passed: delivered at least once,
    never lost. A receiver that saw it already knows by the body's ``id`` (signed)."""
    now = now or timezone.now()
    if delivery.state != Delivery.State.PENDING:
        return delivery
    lease = now + timedelta(seconds=2 * settings.PANEL_NOTIFY_TIMEOUT + 60)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    claimed = Delivery.objects.filter(due, pk=delivery.pk, state=Delivery.State.PENDING).update(
        attempts=F("attempts") + 1, next_attempt_at=lease
    )
    delivery.refresh_from_db(fields=["state", "attempts", "next_attempt_at"])
    if not claimed:
        return delivery  # another worker has it, or it is not due
    channel = delivery.channel
    notice = notice_for(delivery)
    try:
        if channel.kind == NotificationChannel.Kind.EMAIL:
            status = notify.send_email(channel.target, notice)
        elif channel.kind == NotificationChannel.Kind.WEBHOOK:
            status = notify.send_webhook(channel.target, channel.secret, notice, channel.owner)
        else:
            status = notify.send_telegram(channel.target, channel.secret, notice)
        delivery.state, delivery.sent_at, delivery.response_status = "sent", now, status
        delivery.last_error, delivery.next_attempt_at = "", None
    except notify.NotifyError as exc:
        delivery.last_error, delivery.response_status = str(exc)[:1000], exc.status
        if exc.retryable and delivery.attempts < settings.PANEL_ALERT_DELIVERY_ATTEMPTS:
            delay = 30 * 4 ** (delivery.attempts - 1)
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        else:
            delivery.state, delivery.next_attempt_at = Delivery.State.FAILED, None
    delivery.save()
    events.changed(delivery, owner=channel.owner)
    return delivery


# --- uptime checks and the status page -------------------------------------------------

CHECK_FIELDS = [
    "name",
    "kind",
    "target",
    "keyword",
    "expect_status",
    "dns_type",
    "expected",
    "dns_server",
    "interval",
    "timeout",
    "retries",
    "enabled",
    "public",
]
DNS_TYPES = ["A", "AAAA", "CNAME", "MX", "NS", "TXT"]
_HOST = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return len(value) <= 253 and bool(_HOST.fullmatch(value))


def _validate_check(check: Check) -> None:
    errors = {}
    kind = check.kind
    if kind == Check.Kind.HTTP:
        try:
            URLValidator(schemes=["http", "https"])(check.target)
        except ValidationError:
            errors["target"] = "Give the http:// or https:// URL."
        if check.expect_status is not None and not 100 <= check.expect_status <= 599:
            errors["expect_status"] = "An HTTP status, 100 to 599."
    elif kind == Check.Kind.TCP:
        host, port = split_host_port(check.target)
        if not _is_host(host) or port is None or not 0 < port < 65536:
            errors["target"] = "Give host:port, e.g. db.example.com:5432."
    elif kind == Check.Kind.DNS:
        if not _is_host(check.target) or _is_ip(check.target):
            errors["target"] = "Give the name to resolve, e.g. www.example.com."
        if check.dns_type not in DNS_TYPES:
            errors["dns_type"] = f"One of {', '.join(DNS_TYPES)}."
        if check.dns_server:
            host, port = split_host_port(check.dns_server)
            if not _is_ip(host) or (port is not None and not 0 < port < 65536):
                errors["dns_server"] = "Give the server's IP address (and :port)."
    elif kind == Check.Kind.PING and not _is_host(check.target):
        errors["target"] = "Give a host name or IP address."
    if not 60 <= check.interval <= 86400:
        errors["interval"] = "Between 60 and 86400 seconds."
    if not 1 <= check.timeout <= 60:
        errors["timeout"] = "Between 1 and 60 seconds."
    if not 1 <= check.retries <= 10:
        errors["retries"] = "Between 1 and 10."
    if errors:
        raise ValidationError(errors)
    check.full_clean(exclude=["owner"])


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@transaction.atomic
def do_create_check(*, actor, data: dict) -> Check:
    accept_only(data, CHECK_FIELDS)
    refuse_nul_in(data, CHECK_FIELDS)
    check = Check(owner=actor)
    _set_fields(check, data, CHECK_FIELDS)
    _validate_check(check)
    check.save()
    audit.record(
        "monitoring.check.create", check, actor=actor, changes={"kind": [None, check.kind]}
    )
    events.changed(check)
    return check


@transaction.atomic
def do_update_check(check: Check, *, actor, data: dict) -> Check:
    accept_only(data, CHECK_FIELDS)
    refuse_nul_in(data, CHECK_FIELDS)
    changes = _set_fields(check, data, CHECK_FIELDS)
    _validate_check(check)
    if {"kind", "target", "interval"} & set(changes):
        check.next_check_at = None  # run the changed check at the next round
    check.save()
    audit.record("monitoring.check.update", check, actor=actor, changes=changes)
    events.changed(check)
    return check


@transaction.atomic
def do_delete_check(check: Check, *, actor) -> None:
    audit.record("monitoring.check.delete", check, actor=actor)
    check.delete()


def ensure_site_check(site, *, scheme: str = "http") -> Check | None:
    """The automatic HTTP check of a website (one per site, made once, owned by the site's
    owner; changing or deleting it is the owner's choice)."""
    source = f"website:{site.uuid.hex}"
    found = Check.objects.filter(source=source).first()
    if found is not None:
        return found
    with transaction.atomic():
        check = Check(
            owner=site.owner,
            name=site.domain[:100],
            kind=Check.Kind.HTTP,
            target=f"{scheme}://{site.domain}/",
            source=source,
        )
        try:
            _validate_check(check)
        except ValidationError:
            return None  # a name no check can ask for: the site is made all the same
        check.save()
        audit.record("monitoring.check.create", check, changes={"source": [None, source]})
        events.changed(check)
    return check


def set_site_check_scheme(site, scheme: str) -> Check | None:
    """Point the site's automatic check at ``scheme``://DOMAIN/ (https once its certificate
    is live, http again without one). A check the owner pointed elsewhere, or deleted, is
    theirs: left alone."""
    if scheme not in ("http", "https"):
        raise ValueError(f"bad scheme {scheme!r}")
    automatic = {f"http://{site.domain}/", f"https://{site.domain}/"}
    target = f"{scheme}://{site.domain}/"
    with transaction.atomic():
        check = Check.objects.select_for_update().filter(source=f"website:{site.uuid.hex}").first()
        if check is None or check.target not in automatic or check.target == target:
            return check
        changes = {"target": [check.target, target]}
        check.target = target
        check.next_check_at = None  # ask the new URL at the next round
        check.save(update_fields=["target", "next_check_at"])
        audit.record("monitoring.check.update", check, changes=changes)
        events.changed(check)
    return check


STATUS_PAGE_FIELDS = ["title", "enabled"]


@transaction.atomic
def do_save_status_page(*, actor, data: dict) -> StatusPage:
    """Turn on (or change) the actor's public status page; the slug is made once."""
    accept_only(data, STATUS_PAGE_FIELDS)
    refuse_nul_in(data, STATUS_PAGE_FIELDS)
    page = StatusPage.objects.filter(owner=actor).first()
    if page is None:
        page = StatusPage(owner=actor, slug=secrets.token_urlsafe(32), title="Status")
    changes = _set_fields(page, data, STATUS_PAGE_FIELDS)
    page.full_clean(exclude=["owner"])
    page.save()
    audit.record("monitoring.status_page.save", page, actor=actor, changes=changes)
    return page


def check_failing_source(rule: AlertRule, now) -> list:
    """Checks of the rule's owner that are down (alert kind ``check_failing``)."""
    from monitoring.alerts import Finding

    return [
        Finding(
            subject=f"check:{check.uuid.hex}",
            label=check.name,
            message=f"{check.name} is down: {check.last_error or 'no answer'}",
            value=check.last_response_ms,
        )
        for check in restrict(Check, rule.owner).filter(enabled=True, status=Check.Status.DOWN)
    ]


# --- maintenance windows (monitoring/maintenance.py) -------------------------------------

WINDOW_FIELDS = [
    "name",
    "scope",
    "server",
    "location",
    "starts_at",
    "ends_at",
    "repeat",
    "time_zone",
]


def _validate_window(window: MaintenanceWindow) -> None:
    from monitoring.maintenance import time_zones

    errors = {}
    if window.time_zone not in time_zones():
        errors["time_zone"] = "Give a time zone such as UTC or Europe/Berlin."
    if window.starts_at and window.ends_at:
        length = window.ends_at - window.starts_at
        if length <= timedelta(0):
            errors["ends_at"] = "The end must come after the start."
        elif window.repeat == MaintenanceWindow.Repeat.WEEKLY and length >= timedelta(days=7):
            errors["ends_at"] = "A weekly window lasts less than a week."
        elif length > timedelta(days=366):
            errors["ends_at"] = "At most a year."
    if window.scope == MaintenanceWindow.Scope.SERVER:
        if window.server_id is None:
            errors["server"] = "Choose the server."
        elif not restrict(Server, window.owner, CHANGE).filter(pk=window.server_id).exists():
            errors["server"] = "No such server."
    else:
        window.server = None
    if window.scope == MaintenanceWindow.Scope.LOCATION and not window.location:
        errors["location"] = "Give the location."
    if errors:
        raise ValidationError(errors)
    window.full_clean(exclude=["owner"])


def _apply_windows_after_commit() -> None:
    # Statuses follow at once (not only at the next minute's run).
    from monitoring.maintenance import apply_windows

    transaction.on_commit(apply_windows)


@transaction.atomic
def do_create_window(*, actor, data: dict) -> MaintenanceWindow:
    accept_only(data, WINDOW_FIELDS)
    refuse_nul_in(data, ["name", "location", "time_zone"])
    window = MaintenanceWindow(owner=actor)
    _set_fields(window, data, WINDOW_FIELDS)
    _validate_window(window)
    window.save()
    audit.record(
        "monitoring.maintenance_window.create",
        window,
        actor=actor,
        changes={k: [None, audit.jsonable(getattr(window, k))] for k in WINDOW_FIELDS},
    )
    events.changed(window)
    _apply_windows_after_commit()
    return window


@transaction.atomic
def do_update_window(window: MaintenanceWindow, *, actor, data: dict) -> MaintenanceWindow:
    accept_only(data, WINDOW_FIELDS)
    refuse_nul_in(data, ["name", "location", "time_zone"])
    changes = _set_fields(window, data, WINDOW_FIELDS)
    _validate_window(window)
    window.save()
    audit.record("monitoring.maintenance_window.update", window, actor=actor, changes=changes)
    events.changed(window)
    _apply_windows_after_commit()
    return window


@transaction.atomic
def do_delete_window(window: MaintenanceWindow, *, actor) -> None:
    audit.record("monitoring.maintenance_window.delete", window, actor=actor)
    events.changed(window)  # open lists re-fetch and drop it
    window.delete()
    _apply_windows_after_commit()
