"""The OpenAPI schema describes exactly what the API answers (finding 16).

Every GET endpoint in /api/schema/, and the action endpoints, are called with real objects;
each response body is validated against the schema's response for that status, with
``additionalProperties: false`` so an undocumented field fails as much as a missing one.
"""

from __future__ import annotations

import re

import jsonschema
import pytest

from accounts import services as account_services
from core.operations import start_operation
from dns.models import Record, Zone
from monitoring.models import (
    Alert,
    AlertRule,
    Check,
    Delivery,
    MaintenanceWindow,
    NotificationChannel,
)
from servers.models import DriftItem, FirewallRule, Server
from tests.conftest import login
from websites.certificates.models import Certificate
from websites.databases.models import CustomerDatabase, DatabaseGrant, DatabaseServer, DatabaseUser
from websites.models import Plan, Subscription, SystemAccount, Website

pytestmark = pytest.mark.django_db


def to_json_schema(node):
    """OpenAPI 3.0 schema objects -> JSON Schema (nullable, closed objects)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if "$ref" in out:
        return out
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture
def world(admin_user, reseller, customer):
    server = Server.objects.create(name="s1", address="93.184.216.34", owner=reseller)
    rule = FirewallRule.objects.create(server=server, port=22)
    DriftItem.objects.create(server=server, path="/etc/x", kind="changed", expected_sha256="0")
    op = start_operation(kind="k", task="tests.support.steps", owner=customer)  # no target
    targeted = start_operation(
        kind="server.apply", task="tests.support.steps", owner=reseller, target=server
    )
    token, _ = account_services.do_create_token(admin_user, actor=admin_user, data={"name": "t"})
    site = Website.objects.create(
        domain="s.example.com",
        server=server,
        owner=customer,
        options={"gzip": True, "headers": [{"name": "X-A", "value": "b"}]},
    )
    certificate = Certificate.objects.create(website=site, domains=site.domain)
    db_server = DatabaseServer.objects.create(
        name="db1", engine="postgresql", host="127.0.0.1", port=5432, admin_user="postgres"
    )
    database = CustomerDatabase.objects.create(
        db_server=db_server, owner=customer, name=f"{customer.account_name}_app", size_bytes=1
    )
    db_user = DatabaseUser.objects.create(
        db_server=db_server, owner=customer, name=database.name, password="x"
    )
    grant = DatabaseGrant.objects.create(database=database, user=db_user)
    zone = Zone.objects.create(name="schema.example.com", owner=customer)
    record = Record.objects.create(zone=zone, name="www", type="A", content="10.0.0.1")
    plan = Plan.objects.create(name="p", websites=3, php_versions="8.2", kinds="php static")
    Subscription.objects.create(user=customer, plan=plan)
    account = SystemAccount.objects.create(server=server, user=customer, name="acct")
    from vps.models import Hypervisor, Image, IpPool, Snapshot, SshKey, Vps, VpsPlan

    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    vps_plan = VpsPlan.objects.create(name="vp")
    image = Image.objects.create(name="img", path="/x", format="qcow2", sha256="0" * 64)
    vps = Vps.objects.create(hostname="v1", owner=customer, plan=vps_plan, hypervisor=hv)
    vps_objects = {
        "hypervisors": hv,
        "vps-plans": vps_plan,
        "images": image,
        "vps": vps,
        "vps-snapshots": Snapshot.objects.create(vps=vps, name="s1"),
        "ssh-keys": SshKey.objects.create(owner=customer, name="k", public_key="x"),
        "ip-pools": IpPool.objects.create(
            name="p",
            hypervisor=hv,
            network="10.9.0.0/24",
            gateway="10.9.0.1",
            first="10.9.0.2",
            last="10.9.0.9",
        ),
    }
    from backups.models import BackupJob, BackupRun, BackupTarget

    backup_target = BackupTarget.objects.create(
        name="bt", server=server, path="/srv/b", password="x" * 20
    )
    backup_job = BackupJob.objects.create(account=account, target=backup_target)
    vps_objects["backup-targets"] = backup_target
    vps_objects["backup-jobs"] = backup_job
    vps_objects["backup-runs"] = BackupRun.objects.create(
        job=backup_job, state="succeeded", snapshot_id="abcd1234"
    )
    channel = NotificationChannel.objects.create(
        owner=customer, name="c", kind="email", target="c@example.com"
    )
    alert_rule = AlertRule.objects.create(owner=customer, name="r", kind="check_failing")
    alert_rule.channels.add(channel)
    alert = Alert.objects.create(rule=alert_rule, owner=customer, kind="x", subject="s", label="l")
    Delivery.objects.create(channel=channel, alert=alert, event="firing")
    check = Check.objects.create(owner=customer, name="c", target="https://s.example.com/")
    window = MaintenanceWindow.objects.create(
        owner=customer, name="w", server=server, starts_at=op.created_at, ends_at=op.created_at
    )
    from mail.models import MailAlias, Mailbox, MailDomain

    mail_domain = MailDomain.objects.create(
        domain="mail.example.com", server=server, owner=customer
    )
    mail_objects = {
        "mail-domains": mail_domain,
        "mailboxes": Mailbox.objects.create(
            domain=mail_domain, local_part="info", password_hash="{SHA512-CRYPT}$6$s$" + "x" * 86
        ),
        "mail-aliases": MailAlias.objects.create(
            domain=mail_domain, local_part="sales", destinations="info@mail.example.com"
        ),
        "mail-servers": server,
    }
    from hooks.models import Delivery as HookDelivery
    from hooks.models import Event, Webhook

    webhook = Webhook.objects.create(
        owner=customer, name="w", url="https://hooks.example.com/", events=["alert.fired"]
    )
    event = Event.objects.create(type="webhook.test", source="test:schema", owner_id=customer.pk)
    mail_objects["webhooks"] = webhook
    mail_objects["webhook-deliveries"] = HookDelivery.objects.create(webhook=webhook, event=event)
    from billing.models import Invoice, PaymentCard

    mail_objects["invoices"] = Invoice.objects.create(customer=customer, currency="EUR")
    mail_objects["payment-methods"] = PaymentCard.objects.create(
        user=customer, stripe_id="pm_schema", brand="visa", last4="4242"
    )
    return {
        "mail_objects": mail_objects,
        "vps_objects": vps_objects,
        "channel": channel,
        "alert_rule": alert_rule,
        "alert": alert,
        "check": check,
        "window": window,
        "account": account,
        "db_server": db_server,
        "database": database,
        "db_user": db_user,
        "grant": grant,
        "zone": zone,
        "record": record,
        "plan": plan,
        "website": site,
        "certificate": certificate,
        "server": server,
        "rule": rule,
        "op": op,
        "targeted": targeted,
        "token": token,
        "user": customer,
        **_billing(customer),
    }


def _billing(customer) -> dict:
    from decimal import Decimal

    from billing.models import Invoice, Payment, UsageRecord

    invoice = Invoice.objects.create(customer=customer, currency="EUR")
    invoice.lines.create(description="plan", amount=Decimal("10.00"))
    Invoice.objects.filter(pk=invoice.pk).update(
        state=Invoice.State.ISSUED, number="INV-1", total=Decimal("10.00")
    )
    payment = Payment.objects.create(invoice=invoice, amount=Decimal("1.00"), currency="EUR")
    usage = UsageRecord.objects.create(
        account=customer,
        period_start=invoice.created_at.date(),
        period_end=invoice.created_at.date(),
        kind="mailboxes",
        quantity=Decimal(1),
    )
    return {"invoice": invoice, "payment": payment, "usage": usage}


def _value_for(path: str, name: str, world) -> str:
    if path.startswith(("/api/v1/servers/", "/api/v1/metrics/")):
        return str(world["server"].uuid)
    if path.startswith("/api/v1/firewall-rules/"):
        return str(world["rule"].uuid)
    if path.startswith("/api/v1/operations/"):
        return str(world["op"].uuid)
    if path.startswith("/api/v1/tokens/"):
        return str(world["token"].uuid)
    if path.startswith("/api/v1/zones/"):
        nested_record = "/records/" in path and name == "uuid"
        return str(world["record" if nested_record else "zone"].uuid)
    if path.startswith("/api/v1/records/"):
        return str(world["record"].uuid)
    if path.startswith("/api/v1/websites/"):
        return str(world["website"].uuid)
    if path.startswith("/api/v1/system-accounts/"):
        return str(world["account"].uuid)
    if path.startswith("/api/v1/certificates/"):
        return str(world["certificate"].uuid)
    for prefix, key in (
        ("/api/v1/databases/", "database"),
        ("/api/v1/database-users/", "db_user"),
        ("/api/v1/database-grants/", "grant"),
        ("/api/v1/database-servers/", "db_server"),
    ):
        if path.startswith(prefix):
            return str(world[key].uuid)
    for prefix, obj in world["vps_objects"].items():
        if path.startswith(f"/api/v1/{prefix}/"):
            return str(obj.uuid)
    for prefix, key in (
        ("/api/v1/channels/", "channel"),
        ("/api/v1/alert-rules/", "alert_rule"),
        ("/api/v1/alerts/", "alert"),
        ("/api/v1/checks/", "check"),
        ("/api/v1/maintenance-windows/", "window"),
    ):
        if path.startswith(prefix):
            return str(world[key].uuid)
    for prefix, obj in world["mail_objects"].items():
        if path.startswith(f"/api/v1/{prefix}/"):
            return str(obj.uuid)
    if path.startswith("/api/v1/plans/"):
        return str(world["plan"].uuid)
    if path.startswith("/api/v1/users/"):
        return str(world["user"].uuid)
    if path.startswith("/api/v1/invoices/"):
        return str(world["invoice"].uuid)
    if path.startswith("/api/v1/payments/"):
        return str(world["payment"].uuid)
    if path.startswith("/api/v1/usage/"):
        return str(world["usage"].pk)
    if path.startswith("/api/v1/audit/"):
        from core.models import AuditEntry

        return str(AuditEntry.objects.order_by("id").first().pk)
    raise AssertionError(f"no object for {path} {{{name}}}")


def test_every_response_matches_the_schema(admin_user, world):
    client = login(admin_user)
    schema = client.get("/api/schema/?format=json").json()
    components = to_json_schema(schema["components"])
    checked = []
    for path, item in schema["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m, p=path: _value_for(p, m[1], world), path)
        for method in ("get",):
            if method not in item:
                continue
            resp = client.get(url)
            assert resp.status_code < 300, (url, resp.status_code)
            content = item[method]["responses"][str(resp.status_code)]["content"]
            if "application/json" not in content:  # a document (an invoice's PDF)
                assert resp["Content-Type"] in content, (url, resp["Content-Type"])
                continue
            spec = content["application/json"]
            body_schema = {**to_json_schema(spec["schema"]), "components": components}
            jsonschema.validate(resp.json(), body_schema)
            checked.append(url)
    assert len(checked) >= 12


@pytest.mark.parametrize(
    "method,route,status",
    [
        ("post", "/api/v1/servers/{server}/apply/", 202),
        ("post", "/api/v1/operations/{targeted}/cancel/", 200),
        ("post", "/api/v1/tokens/", 201),
    ],
)
def test_action_responses_match(admin_user, world, method, route, status):
    client = login(admin_user)
    schema = client.get("/api/schema/?format=json").json()
    components = to_json_schema(schema["components"])
    url = route.format(**{k: getattr(v, "uuid", v) for k, v in world.items()})
    resp = getattr(client, method)(url, {"name": "x"}, content_type="application/json")
    assert resp.status_code == status, resp.content
    template = re.sub(r"\{(\w+)\}", "{uuid}", route)
    spec = schema["paths"][template][method]["responses"][str(status)]
    body_schema = {**to_json_schema(spec["content"]["application/json"]["schema"])}
    jsonschema.validate(resp.json(), {**body_schema, "components": components})


def test_operation_without_target_is_documented_nullable(admin_user, world):
    schema = login(admin_user).get("/api/schema/?format=json").json()
    field = schema["components"]["schemas"]["Operation"]["properties"]["target_type"]
    assert field.get("nullable") is True


def test_paging_parameters_are_bounded(admin_user):
    schema = login(admin_user).get("/api/schema/?format=json").json()

    def params(path):
        return {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"]}

    by_cursor, by_offset = params("/api/v1/operations/"), params("/api/v1/servers/")
    assert by_cursor["limit"]["minimum"] == 1 and by_cursor["limit"]["maximum"] == 500
    assert "cursor" in by_cursor and "offset" not in by_cursor
    assert by_offset["limit"]["maximum"] == 500 and by_offset["offset"]["minimum"] == 0


def test_the_schema_builds_without_warnings():
    """CI's `manage.py check --fail-level WARNING` fails on any schema warning (two apps'
    `status` choice sets colliding into an arbitrary enum name, say): caught here first."""
    from drf_spectacular.checks import schema_check
    from drf_spectacular.drainage import GENERATOR_STATS

    GENERATOR_STATS.reset()  # warnings are cached once per message and process
    found = schema_check(None)
    assert found == [], [str(m) for m in found]
