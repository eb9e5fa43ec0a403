"""Generated bad input for every writable field of every API endpoint (finding 8's class).

The fields come from the OpenAPI schema's request bodies, so a new endpoint or field is
covered without editing this file. Whatever is sent, the answer is never a 500 and nothing
with a NUL character is stored.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache

from core.models import AuditEntry
from dns.models import Record, Zone
from monitoring.models import Alert, AlertRule, Check, MaintenanceWindow, NotificationChannel
from servers.models import FirewallRule, Server
from tests.conftest import login
from websites.certificates.models import Certificate
from websites.databases.models import DatabaseServer
from websites.models import Plan, SystemAccount, Website

pytestmark = pytest.mark.django_db

BAD_VALUES = [
    None,
    True,
    -1,
    2**64,
    10**30,
    1.5,
    "",
    "x" * 5000,
    "a\u0000b",
    "\u202eevil",
    "²",
    "1" * 400,
    [],
    ["a", 1],
    {},
    {"nested": {"deeper": "\u0000"}},
]


def _objects(admin_user):
    server = Server.objects.create(name="fuzz", address="93.184.216.34", owner=admin_user)
    rule = FirewallRule.objects.create(server=server, port=22)
    site = Website.objects.create(domain="fuzz.example.com", server=server, owner=admin_user)
    cert = Certificate.objects.create(website=site, domains=site.domain)
    db_server = DatabaseServer.objects.create(
        name="fuzz-db", engine="mariadb", host="127.0.0.1", port=3306, admin_user="root"
    )
    zone = Zone.objects.create(name="fuzz.example.org", owner=admin_user)
    record = Record.objects.create(zone=zone, name="www", type="A", content="10.0.0.1")
    plan = Plan.objects.create(name="fuzz", websites=3)
    account = SystemAccount.objects.create(server=server, user=admin_user, name="fuzz")
    from vps.models import Hypervisor, Image, IpPool, Snapshot, SshKey, Vps, VpsPlan

    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    vps_plan = VpsPlan.objects.create(name="fuzz")
    vps = Vps.objects.create(hostname="fuzz", owner=admin_user, plan=vps_plan, hypervisor=hv)
    channel = NotificationChannel.objects.create(
        owner=admin_user, name="fuzz", kind="email", target="fuzz@example.com"
    )
    alert_rule = AlertRule.objects.create(owner=admin_user, name="fuzz", kind="server_offline")
    alert = Alert.objects.create(
        rule=alert_rule, owner=admin_user, kind="x", subject="s", label="l"
    )
    check = Check.objects.create(owner=admin_user, name="fuzz", target="https://fuzz.example.com/")
    from mail.models import MailAlias, Mailbox, MailDomain

    mail_domain = MailDomain.objects.create(
        domain="fuzz-mail.example.com", server=server, owner=admin_user
    )
    from backups.models import BackupJob, BackupRun, BackupTarget

    backup_target = BackupTarget.objects.create(
        name="fuzz", server=server, path="/srv/b", password="x" * 20
    )
    backup_job = BackupJob.objects.create(account=account, target=backup_target)
    backup_run = BackupRun.objects.create(job=backup_job, state="succeeded", snapshot_id="abcd1234")
    from hooks.models import Webhook

    webhook = Webhook.objects.create(
        owner=admin_user, name="fuzz", url="https://hooks.example.com/", events=["alert.fired"]
    )
    return {
        "webhooks": webhook,
        "mail-domains": mail_domain,
        "mailboxes": Mailbox.objects.create(
            domain=mail_domain, local_part="info", password_hash="{SHA512-CRYPT}$6$s$" + "x" * 86
        ),
        "mail-aliases": MailAlias.objects.create(
            domain=mail_domain, local_part="sales", destinations="info@fuzz-mail.example.com"
        ),
        "mail-servers": server,
        "backup-targets": backup_target,
        "backup-jobs": backup_job,
        "backup-runs": backup_run,
        "hypervisors": hv,
        "vps-plans": vps_plan,
        "images": Image.objects.create(name="fuzz", path="/x", format="raw", sha256="0" * 64),
        "vps": vps,
        "vps-snapshots": Snapshot.objects.create(vps=vps, name="fuzz"),
        "ssh-keys": SshKey.objects.create(owner=admin_user, name="fuzz", public_key="x"),
        "ip-pools": IpPool.objects.create(
            name="fuzz",
            hypervisor=hv,
            network="10.9.0.0/24",
            gateway="10.9.0.1",
            first="10.9.0.2",
            last="10.9.0.9",
        ),
        "channels": channel,
        "alert-rules": alert_rule,
        "alerts": alert,
        "checks": check,
        "maintenance-windows": MaintenanceWindow.objects.create(
            owner=admin_user,
            name="fuzz",
            server=server,
            starts_at=server.created_at,
            ends_at=server.created_at,
        ),
        "servers": server,
        "firewall-rules": rule,
        "users": admin_user,
        "websites": site,
        "certificates": cert,
        "database-servers": db_server,
        "zones": zone,
        "records": record,
        "plans": plan,
        "system-accounts": account,
        "invoices": _issued_invoice(admin_user),
    }


def _issued_invoice(customer):
    from decimal import Decimal

    from billing.models import Invoice

    invoice = Invoice.objects.create(customer=customer, currency="EUR")
    Invoice.objects.filter(pk=invoice.pk).update(
        state=Invoice.State.ISSUED, number="INV-FUZZ", total=Decimal("10.00")
    )
    return invoice


def _request_bodies(schema, methods):
    """(method, path template, bodies) for every JSON request body: the bad values to send.

    Each field gets every bad value alone, so that a value passing its field's checks
    reaches the object-level checks and the service. Where two or more fields are required,
    a body naming one field never gets past the missing others: the fields are then sent
    together, every field checked in one request (DRF checks each field and collects the
    errors, so a field that crashes still crashes). PUT is left out where PATCH sends the
    same fields to the same serializer."""
    components = schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method in methods:
            if method == "put" and "patch" in item:
                continue
            body = item.get(method, {}).get("requestBody", {})
            ref = body.get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" not in ref:
                continue
            component = components[ref["$ref"].rsplit("/", 1)[-1]]
            fields = component.get("properties", {})
            if not fields:
                continue
            if len(component.get("required", [])) >= 2:
                bodies = [dict.fromkeys(fields, value) for value in BAD_VALUES]
            else:
                bodies = [{field: value} for field in fields for value in BAD_VALUES]
            yield method, path, bodies


def test_no_input_causes_a_server_error(admin_user):
    fuzz(admin_user, ("post",))


def fuzz(admin_user, methods: tuple[str, ...]) -> None:
    """Bad values for every field of the request bodies of ``methods`` (creating and
    updating are swept in two files, so that parallel workers share them)."""
    client = login(admin_user)
    objects = _objects(admin_user)
    schema = client.get("/api/schema/?format=json").json()
    sent = 0
    for method, template, bodies in _request_bodies(schema, methods):
        cache.clear()  # the user rate limit counts every request: each endpoint starts afresh
        # Each {placeholder} takes an object of the collection named just before it
        # (/zones/{zone_uuid}/records/{uuid}/: a zone, then a record).
        parts = template.split("/")
        url = "/".join(
            str(getattr(objects.get(parts[i - 1]), "uuid", "")) if p.startswith("{") else p
            for i, p in enumerate(parts)
        )
        for body in bodies:
            resp = getattr(client, method)(url, body, content_type="application/json")
            assert resp.status_code < 500, (method, url, body, resp.content[:300])
            sent += 1
        resp = getattr(client, method)(url, "{not json", content_type="application/json")
        assert resp.status_code == 400
    assert sent > 300, sent
    stored = [
        *Server.objects.values_list("name", "location", "notes", "profile"),
        *FirewallRule.objects.values_list("comment", "source"),
        *Website.objects.values_list("options", "custom_directives"),
        *DatabaseServer.objects.values_list("name", "host", "admin_user", "user_host"),
        *Zone.objects.values_list("name", "soa_rname"),
        *Record.objects.values_list("name", "content"),
        *AuditEntry.objects.values_list("object_label", "changes"),
    ]
    assert "\x00" not in repr(stored) and "\\x00" not in repr(stored)
