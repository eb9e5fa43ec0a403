"""Every URL pattern that takes an object id, requested by people who must not reach the
object: an unrelated customer, an unrelated reseller, and support staff.

The routes are read from the URL resolver and the websocket router, so a new route is
covered without editing this file. Outsiders must get 404 (or 405, or the admin's login
redirect) and change nothing; support may read but change nothing except cancelling
operations; nobody ever sees a stored secret or a 500.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps as django_apps
from django.contrib.admin.sites import site as admin_site
from django.contrib.contenttypes.models import ContentType
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts import services as account_services
from accounts.devices import AuthenticatorDevice
from accounts.models import LoginAttempt
from core import audit
from core.models import AuditEntry, Operation
from core.operations import start_operation
from dns.models import Nameserver, NameserverGroup, Record, Zone
from monitoring.models import (
    Alert,
    AlertRule,
    Check,
    CheckResult,
    Delivery,
    MaintenanceWindow,
    NotificationChannel,
    StatusPage,
)
from servers.models import DriftItem, FirewallRule, Server, TerminalSession
from tests.conftest import login, make_user
from websites.certificates.models import Certificate
from websites.databases.models import CustomerDatabase, DatabaseGrant, DatabaseServer, DatabaseUser
from websites.models import Plan, Subscription, SystemAccount, Website

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----sweep-private-key-material"
SSH_PASSWORD = "sweep-ssh-password-material"
DB_ADMIN_PASSWORD = "sweep-db-admin-password-material"
DB_USER_PASSWORD = "sweep-db-user-password-material"
TSIG_SECRET = "c3dlZXAtdHNpZy1zZWNyZXQtbWF0ZXJpYWw="
DNS_API_KEY = "sweep-powerdns-api-key-material"
TLS_KEY = "-----BEGIN PRIVATE KEY-----sweep-tls-key-material"
VNC_PASSWORD = "sweep-vnc-password-material"
WEBHOOK_SECRET = "sweep-webhook-secret-material"
STATUS_SLUG = "sweep-status-slug-material-0123456789abcdef"
MAILBOX_HASH = "{SHA512-CRYPT}$6$sweepsalt$" + "s" * 86
# path() converters (<uuid:uuid>) and the router's regex groups ((?P<uuid>[^/.]+)).
CONVERTER = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")
API_UNSAFE = ("post", "patch", "put", "delete")


def methods(url: str) -> tuple[str, ...]:
    # Portal and admin views answer GET and POST (forms); the API every method.
    return ("get", *API_UNSAFE) if url.startswith("/api/") else ("get", "post")


def walk(patterns, prefix=""):
    """(route, pattern) for every URL pattern, nested includes flattened."""
    for p in patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            yield route, p


def model_of(pattern: URLPattern):
    """The model a route is about, when its view says (class-based views, viewsets, admin)."""
    callback = pattern.callback
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    for source in (view_class, getattr(callback, "model_admin", None)):
        model = getattr(source, "model", None) or getattr(
            getattr(source, "queryset", None), "model", None
        )
        if model is not None:
            return model
    name = pattern.name or ""
    for model in admin_site._registry:
        label = f"{model._meta.app_label}_{model._meta.model_name}_"
        if name.startswith(label):
            return model
    return None


@pytest.fixture
def victims(db, admin_user):
    """A tenant's objects (reseller with a customer), and secrets that must never show."""
    reseller = make_user("victim-reseller@example.com", "reseller")
    customer = make_user("victim@example.com", "customer", reseller=reseller)
    server = Server.objects.create(
        name="victim-srv",
        address="93.184.216.34",
        owner=reseller,
        private_key=PRIVATE_KEY,
        password=SSH_PASSWORD,
        last_error="cannot reach 93.184.216.34:22: Connection refused",
    )
    rule = FirewallRule.objects.create(server=server, port=22)
    drift = DriftItem.objects.create(
        server=server, path="/etc/x", kind="changed", expected_sha256="0"
    )
    website = Website.objects.create(domain="victim.example.com", server=server, owner=customer)
    certificate = Certificate.objects.create(
        website=website, domains=website.domain, private_key=TLS_KEY, fullchain="chain"
    )
    plan = Plan.objects.create(name="victim plan", owner=reseller, websites=3)
    subscription = Subscription.objects.create(user=customer, plan=plan)
    op = start_operation(
        kind="server.apply", task="tests.support.steps", owner=reseller, target=server
    )
    token, raw_token = account_services.do_create_token(
        customer, actor=customer, data={"name": "ci", "scope": "write"}
    )
    device = AuthenticatorDevice.objects.create(user=customer, name="phone", confirmed=True)
    codes = account_services.do_generate_backup_codes(customer, actor=customer)
    session = TerminalSession.objects.create(server=server, user=admin_user)
    attempt = LoginAttempt.objects.create(email=customer.email, ip="10.0.0.1")
    entry = audit.record("test.victim", server, actor=customer)
    db_server = DatabaseServer.objects.create(
        name="victim-db",
        engine="mariadb",
        server=server,
        port=3306,
        admin_user="root",
        admin_password=DB_ADMIN_PASSWORD,
    )
    database = CustomerDatabase.objects.create(
        db_server=db_server, owner=customer, name=f"{customer.account_name}_shop"
    )
    db_user = DatabaseUser.objects.create(
        db_server=db_server, owner=customer, name=database.name, password=DB_USER_PASSWORD
    )
    grant = DatabaseGrant.objects.create(database=database, user=db_user)
    group = NameserverGroup.objects.create(name="victim-ns")
    nameserver = Nameserver.objects.create(
        group=group,
        hostname="ns1.example.net",
        host="127.0.0.1",
        tsig_key_name="k",
        tsig_secret=TSIG_SECRET,
        api_key=DNS_API_KEY,
    )
    zone = Zone.objects.create(name="victim.example.com", owner=customer)
    record = Record.objects.create(zone=zone, name="www", type="A", content="10.0.0.1")
    objects = [reseller, customer, server, rule, drift, website, op, token, session, attempt, entry]
    account = SystemAccount.objects.create(server=server, user=customer, name="victim")
    objects += [group, nameserver, zone, record, plan, subscription, certificate, account]
    objects += [db_server, database, db_user, grant]
    from mail.models import MailAlias, Mailbox, MailDomain

    mail_domain = MailDomain.objects.create(
        domain="victim.example.com", server=server, owner=customer
    )
    mailbox = Mailbox.objects.create(
        domain=mail_domain, local_part="info", password_hash=MAILBOX_HASH
    )
    mail_alias = MailAlias.objects.create(
        domain=mail_domain, local_part="sales", destinations="info@victim.example.com"
    )
    objects += [mail_domain, mailbox, mail_alias]
    from vps.models import Hypervisor, Image, IpPool, Snapshot, SshKey, Vps, VpsPlan

    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    vps_plan = VpsPlan.objects.create(name="victim vps plan", owner=reseller)
    image = Image.objects.create(name="victim-img", path="/x", format="qcow2", sha256="0" * 64)
    vps = Vps.objects.create(
        hostname="victim", owner=customer, plan=vps_plan, hypervisor=hv, vnc_password=VNC_PASSWORD
    )
    objects += [hv, vps_plan, image, vps, Snapshot.objects.create(vps=vps, name="s1")]
    objects += [SshKey.objects.create(owner=customer, name="k", public_key="ssh-ed25519 AAAA")]
    objects += [
        IpPool.objects.create(
            name="victim-pool",
            hypervisor=hv,
            network="10.9.0.0/24",
            gateway="10.9.0.1",
            first="10.9.0.2",
            last="10.9.0.9",
        )
    ]
    secrets = [PRIVATE_KEY, SSH_PASSWORD, raw_token, device.key, *codes, TSIG_SECRET, DNS_API_KEY]
    secrets += [DB_ADMIN_PASSWORD, DB_USER_PASSWORD, TLS_KEY, VNC_PASSWORD]
    channel = NotificationChannel.objects.create(
        owner=customer,
        name="victim hook",
        kind="webhook",
        target="https://hooks.example.com/",
        secret=WEBHOOK_SECRET,
    )
    alert_rule = AlertRule.objects.create(owner=customer, name="victim rule", kind="check_failing")
    alert_rule.channels.add(channel)
    alert = Alert.objects.create(
        rule=alert_rule, owner=customer, kind="check_failing", subject="check:x", label="victim"
    )
    delivery = Delivery.objects.create(channel=channel, alert=alert, event="firing")
    check = Check.objects.create(
        owner=customer, name="victim", target="https://victim.example.com/"
    )
    result = CheckResult.objects.create(uptime_check=check, ok=True)
    page = StatusPage.objects.create(owner=customer, slug=STATUS_SLUG, title="victim")
    window = MaintenanceWindow.objects.create(
        owner=reseller,
        name="victim window",
        server=server,
        starts_at=timezone.now(),
        ends_at=timezone.now() + timedelta(hours=1),
    )
    objects += [channel, alert_rule, alert, delivery, check, result, page, window]
    from hooks.models import Delivery as HookDelivery
    from hooks.models import Event, Webhook

    webhook = Webhook.objects.create(
        owner=customer,
        token=token,
        name="victim integration",
        url="https://hooks.example.com/in",
        events=["operation.succeeded"],
        secret=WEBHOOK_SECRET,
    )
    event = Event.objects.create(type="webhook.test", source="test:victim", owner_id=customer.pk)
    objects += [webhook, event, HookDelivery.objects.create(webhook=webhook, event=event)]
    secrets += [WEBHOOK_SECRET, STATUS_SLUG, MAILBOX_HASH]
    objects += billing_objects(customer)
    return {"objects": objects, "secrets": secrets, "operation": op}


def billing_objects(customer) -> list:
    """An issued invoice of the victim with a line, a payment, usage and a profile."""
    from decimal import Decimal

    from billing.models import BillingProfile, Invoice, Payment, UsageRecord

    invoice = Invoice.objects.create(customer=customer, issuer=customer.reseller, currency="EUR")
    line = invoice.lines.create(description="victim plan", amount=Decimal("5.00"))
    Invoice.objects.filter(pk=invoice.pk).update(
        state=Invoice.State.ISSUED, number="INV-VICTIM", total=Decimal("5.00")
    )
    invoice.refresh_from_db()
    payment = Payment.objects.create(invoice=invoice, amount=Decimal("1.00"), currency="EUR")
    usage = UsageRecord.objects.create(
        account=customer,
        period_start=timezone.now().date().replace(day=1),
        period_end=timezone.now().date().replace(day=1) + timedelta(days=31),
        kind="mailboxes",
        quantity=Decimal(2),
    )
    profile = BillingProfile.objects.create(user=customer, legal_name="Victim Ltd")
    return [invoice, line, payment, usage, profile]


@pytest.fixture
def outsiders(db):
    return {
        "customer": make_user("outsider@example.com", "customer"),
        "reseller": make_user("outsider-reseller@example.com", "reseller"),
        "support": make_user("outsider-support@example.com", "support"),
        "billing": make_user("outsider-billing@example.com", "billing"),
    }


def view_app(pattern) -> str | None:
    """The label of the app whose module defines a route's view (None when unknown)."""
    callback = pattern.callback
    source = getattr(callback, "view_class", None) or getattr(callback, "cls", None) or callback
    config = django_apps.get_containing_app_config(getattr(source, "__module__", "") or "")
    return config.label if config else None


def substitutions(route: str, model, objects, app: str | None = None):
    """kwargs to try for a route: the victim objects of its model, or all of them.

    A route with several ids and no known model (a function view such as a zone's record
    page) tries the objects of the view's own app in every position rather than every
    object in every position: the pairs that can mean something, without a square blow-up.
    The admin's shortcut redirect gets each object with its own content type."""
    params = []
    for m in CONVERTER.finditer(route):
        if m["group"]:  # a router regex: the name says what it holds
            name = m["group"]
            kind = "uuid" if name.endswith("uuid") else "int" if name in ("pk", "id") else "str"
            params.append((kind, name))
        else:
            params.append((m["conv"] or "str", m["name"]))
    if not any(conv in ("uuid", "int", "path") for conv, _ in params):
        return []  # no object id (e.g. allauth's signed keys): not an object route
    if any(name == "format" for _, name in params):
        return []  # format-suffix duplicates of routes swept anyway
    names = [name for _, name in params]
    if names == ["content_type_id", "object_id"]:
        return [
            {"content_type_id": ContentType.objects.get_for_model(o).pk, "object_id": o.pk}
            for o in objects
        ]
    candidates = [o for o in objects if model is None or isinstance(o, model)]
    ids = [conv for conv, _ in params if conv in ("uuid", "int", "path")]
    if model is None and len(ids) > 1 and app is not None:
        own = [o for o in candidates if o._meta.app_label == app]
        candidates = own or candidates
    values = []
    for conv, _ in params:
        if conv == "uuid":
            values.append([o.uuid for o in candidates if hasattr(o, "uuid")])
        elif conv in ("int", "path"):
            values.append([o.pk for o in candidates])
        else:
            values.append(["x"])  # a free string: no object behind it to reach
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def fill(route: str, kwargs: dict) -> str:
    path = CONVERTER.sub(lambda m: str(kwargs[m["name"] or m["group"]]), route)
    return "/" + path.replace("^", "").replace("$", "").replace("\\Z", "")


def requests_for(objects):
    for route, pattern in walk(get_resolver().url_patterns):
        for kwargs in substitutions(route, model_of(pattern), objects, view_app(pattern)):
            yield fill(route, kwargs)


def snapshot(objects) -> dict:
    return {
        (type(o).__name__, o.pk): type(o)._default_manager.filter(pk=o.pk).values().first()
        for o in objects
    }


def _request(client, method: str, url: str):
    if url.startswith("/api/"):
        return getattr(client, method)(url, {}, content_type="application/json")
    return getattr(client, method)(url)


def sweep_as_outsider(victims, outsiders, who: str) -> None:
    """Every object route, every method, as an unrelated ``who``: 404/405, nothing changed.
    (The sweeps are split over files so that parallel workers share them.)"""
    client = login(outsiders[who])
    before = snapshot(victims["objects"])
    mark = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()
    urls = list(requests_for(victims["objects"]))
    assert len(urls) > 40  # the walk found the routes
    for url in urls:
        for method in methods(url):
            resp = _request(client, method, url)
            if url.startswith("/admin/"):
                assert resp.status_code == 302 and "login" in resp["Location"], (method, url)
                continue
            assert resp.status_code in (404, 405), (who, method, url, resp.status_code)
    assert snapshot(victims["objects"]) == before
    assert not AuditEntry.objects.filter(pk__gt=mark).exists()


# The support sweep (the longest: every route with every method, every body read) runs in
# this many files, test_outsider_sweep_support_<part>.py, so that parallel workers share it.
SUPPORT_PARTS = 3


def sweep_as_support(victims, outsiders, part: int) -> None:
    """Part ``part`` (0-based) of SUPPORT_PARTS: every SUPPORT_PARTS-th object route."""
    client = login(outsiders["support"])
    objects = victims["objects"]
    before = snapshot([o for o in objects if not isinstance(o, Operation)])
    mark = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()
    urls = list(requests_for(objects))[part::SUPPORT_PARTS]
    assert len(urls) > 40 // SUPPORT_PARTS  # the walk found the routes
    for url in urls:
        for method in methods(url):
            resp = _request(client, method, url)
            assert resp.status_code < 500, (method, url)
            body = resp.content.decode(errors="replace")
            leaked = [s for s in victims["secrets"] if s in body]
            assert not leaked, (method, url, leaked)
    assert snapshot([o for o in objects if not isinstance(o, Operation)]) == before
    changed = set(AuditEntry.objects.filter(pk__gt=mark).values_list("action", flat=True))
    assert changed <= {"operation.cancel"}


def sweep_as_administrator(victims, admin_user) -> None:
    client = login(admin_user)
    for url in requests_for(victims["objects"]):
        resp = client.get(url)
        assert resp.status_code < 500, url
        body = resp.content.decode(errors="replace")
        assert not [s for s in victims["secrets"] if s in body], url


def test_outsiders_reach_nothing(victims, outsiders):
    sweep_as_outsider(victims, outsiders, "customer")


@pytest.mark.django_db(transaction=True)
async def test_websockets_refuse_outsiders(victims, outsiders):
    from panel.routing import websocket_urlpatterns
    from tests.unit.test_operations import _connect

    objects = victims["objects"]
    routes = [(str(p.pattern), p) for p in websocket_urlpatterns if "<" in str(p.pattern)]
    assert routes
    for who in ("customer", "reseller", "support"):
        client = await sync_to_async(login)(outsiders[who])
        for route, _pattern in routes:
            for kwargs in substitutions(route, None, objects):
                url = fill(route, kwargs)
                readable = (
                    "/ws/operations/",
                    "/ws/live/operations/",
                    "/ws/live/monitoring/",
                    "/ws/live/vps/",
                    "/ws/live/zones/",
                )
                if who == "support" and url.startswith(readable):
                    continue  # support reads every operation, server, VPS and zone, live too
                comm, ok, code = await _connect(url, client)
                assert not ok and code in (4401, 4403, 4404), (who, url, code)


def test_sweep_covers_new_routes_without_editing(victims):
    """The walk sees routes from every app's urls, the API router and the admin."""
    urls = set(requests_for(victims["objects"]))
    server = next(o for o in victims["objects"] if isinstance(o, Server))
    assert f"/servers/{server.uuid}/apply/" in urls
    assert f"/api/v1/servers/{server.uuid}/" in urls
    assert f"/admin/servers/server/{server.pk}/change/" in urls
    cert = next(o for o in victims["objects"] if isinstance(o, Certificate))
    assert f"/api/v1/certificates/{cert.uuid}/renew/" in urls
    assert f"/websites/certificates/site/{cert.website.uuid}/issue/" in urls
    database = next(o for o in victims["objects"] if isinstance(o, CustomerDatabase))
    assert f"/websites/databases/{database.uuid}/" in urls
    assert f"/api/v1/databases/{database.uuid}/" in urls


def test_routes_with_two_ids_get_their_own_apps_pairs(victims):
    """A zone's record page is swept with the victim zone and the victim record together."""
    urls = set(requests_for(victims["objects"]))
    record = next(o for o in victims["objects"] if isinstance(o, Record))
    assert f"/dns/{record.zone.uuid}/records/{record.uuid}/delete/" in urls
    rule = next(o for o in victims["objects"] if isinstance(o, FirewallRule))
    assert f"/servers/{rule.server.uuid}/firewall/{rule.uuid}/delete/" in urls


def test_the_support_sweep_files_cover_every_part():
    """Each part of the support sweep has its file: no route is left out of the split."""
    import importlib

    parts = []
    for letter in "abcdefghij"[:SUPPORT_PARTS]:
        module = importlib.import_module(f"tests.unit.test_outsider_sweep_support_{letter}")
        parts.append(module.PART)
    assert sorted(parts) == list(range(SUPPORT_PARTS))
