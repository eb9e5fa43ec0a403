"""Benchmark every list page at hosting-company scale: portal, admin changelists, API lists.

Seeds 10,000 websites, 1,000 servers, 100,000 operations and 200,000 audit entries (once; a
second run reuses them), then requests each page in-process and prints the median server
time, the HTML size and the query count. The last line is one JSON object:
{"pages": N, "worst_ms": ..., "worst_page": "...", "max_queries": ..., "max_kb": ...}

    .venv/bin/python bench/pages.py                      # SQLite under var/bench/
    DATABASE_URL=postgres://... .venv/bin/python bench/pages.py
    .venv/bin/python bench/pages.py --scale 0.05         # a quick look at 5% of the sizes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
os.environ.setdefault("PANEL_VAR_DIR", str(ROOT / "var" / "bench"))
os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdefghij")
os.environ.setdefault("PANEL_ENCRYPTION_KEYS", "8rK3bTz3W0Hk1pVx0fYb3cFvHqYp9yq0Zl5H6mB2T3Q=")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ["PANEL_DEBUG"] = "0"
os.environ["PANEL_SECURE"] = "0"
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.contrib import admin  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

SIZES = {"websites": 10_000, "servers": 1_000, "operations": 100_000, "audit": 200_000}
RESELLERS, CUSTOMERS = 20, 1_000
RUNS = 5
BATCH = 5_000


def seed(scale: float) -> None:
    from allauth.account.models import EmailAddress

    from accounts.models import LoginAttempt, Role, User
    from core.models import AuditEntry, Operation, OperationLogLine
    from servers.models import Server
    from websites.models import Website

    sizes = {k: max(10, int(v * scale)) for k, v in SIZES.items()}
    if Operation.objects.count() >= sizes["operations"]:
        return
    t0 = time.monotonic()
    admin_user = User.objects.create_user("admin@bench.test", "x", role=Role.ADMIN)
    resellers = User.objects.bulk_create(
        User(email=f"r{i}@bench.test", role=Role.RESELLER) for i in range(RESELLERS)
    )
    customers = User.objects.bulk_create(
        User(email=f"c{i}@bench.test", role=Role.CUSTOMER, reseller=resellers[i % RESELLERS])
        for i in range(CUSTOMERS)
    )
    EmailAddress.objects.bulk_create(
        EmailAddress(user=u, email=u.email, verified=True, primary=True)
        for u in [admin_user, *resellers, *customers]
    )
    owners = [admin_user, *resellers]
    servers = Server.objects.bulk_create(
        (
            Server(
                name=f"srv-{i:05d}",
                address=f"10.{i // 250}.{i % 250}.1",
                owner=owners[i % len(owners)],
                status=["online", "offline", "unknown"][i % 3],
            )
            for i in range(sizes["servers"])
        ),
        batch_size=BATCH,
    )
    Website.objects.bulk_create(
        (
            Website(
                domain=f"site-{i:06d}.example.com",
                server=servers[i % len(servers)],
                owner=customers[i % len(customers)],
                status=["active", "pending", "failed"][i % 3],
            )
            for i in range(sizes["websites"])
        ),
        batch_size=BATCH,
    )
    now = timezone.now()
    kinds = ["server.test_connection", "server.apply", "server.drift_check", "website.create"]
    states = ["succeeded"] * 6 + ["failed", "cancelled", "running", "queued"]
    step = timedelta(days=60) / sizes["operations"]
    for start in range(0, sizes["operations"], BATCH):
        Operation.objects.bulk_create(
            Operation(
                kind=kinds[i % len(kinds)],
                task="core.tasks.heartbeat",
                target_label=f"srv-{i % sizes['servers']:05d}",
                owner=customers[i % len(customers)] if i % 3 else resellers[i % RESELLERS],
                requested_by=admin_user,
                state=states[i % len(states)],
                progress=100,
                message="Done",
                created_at=now - step * (sizes["operations"] - i),
                finished_at=now - step * (sizes["operations"] - i) + timedelta(seconds=5)
                if states[i % len(states)] in ("succeeded", "failed", "cancelled")
                else None,
            )
            for i in range(start, min(start + BATCH, sizes["operations"]))
        )
    op = Operation.objects.order_by("-id").first()
    OperationLogLine.objects.bulk_create(
        OperationLogLine(operation=op, message=f"line {i}") for i in range(500)
    )
    step = timedelta(days=60) / sizes["audit"]
    for start in range(0, sizes["audit"], BATCH):
        AuditEntry.objects.bulk_create(
            AuditEntry(
                created_at=now - step * (sizes["audit"] - i),
                actor_id=admin_user.pk,
                actor_label=admin_user.email,
                action=["operation.start", "server.update", "user.login"][i % 3],
                object_type=["operation", "server", "user"][i % 3],
                object_id=str(i),
                object_label=f"object {i}",
                owner_id=customers[i % len(customers)].pk,
                # As audit.record routes it: the owner's reseller reads the entry.
                reseller_id=customers[i % len(customers)].reseller_id,
                prev_hash=f"{i:064x}",
                hash=uuid.uuid4().hex * 2,
            )
            for i in range(start, min(start + BATCH, sizes["audit"]))
        )
    LoginAttempt.objects.bulk_create(
        (
            LoginAttempt(email=f"c{i % CUSTOMERS}@bench.test", ip="10.0.0.1", success=i % 4 > 0)
            for i in range(sizes["audit"] // 4)
        ),
        batch_size=BATCH,
    )
    call_command("rebuild_rollups", verbosity=0)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # as autovacuum would, before the first page
    print(f"seeded in {time.monotonic() - t0:.0f} s: {sizes}", file=sys.stderr)


def signed_in(email: str) -> Client:
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import User

    user = User.objects.get(email=email)
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    device, _ = TOTPDevice.objects.get_or_create(user=user, name="bench", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def measure(client: Client, url: str) -> tuple[float, float, float, int]:
    """Median wall and CPU milliseconds, KB of HTML and queries of one page. CPU time is
    shown beside wall time because other work on the machine inflates the wall clock (with
    SQLite the database's work is CPU time of this process too)."""
    client.get(url)  # warm
    walls, cpus = [], []
    for _ in range(RUNS):
        with CaptureQueriesContext(connection) as queries:
            t0, c0 = time.perf_counter(), time.process_time()
            response = client.get(url)
            walls.append((time.perf_counter() - t0) * 1000)
            cpus.append((time.process_time() - c0) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
    kb = len(response.content) / 1024
    return statistics.median(walls), statistics.median(cpus), kb, len(queries)


def pages() -> list[tuple[str, str]]:
    from core.models import Operation
    from core.pagination import cursor_for
    from servers.models import Server

    op = Operation.objects.order_by("-created_at", "-id").first()
    deep = Operation.objects.order_by("-created_at", "-id")[Operation.objects.count() // 2]
    server = Server.objects.order_by("name").first()
    deep_cursor = cursor_for(deep, ("-created_at", "-id"))
    portal = [
        "/",
        "/operations/",
        "/operations/?state=failed",
        "/operations/?q=srv-00077",
        "/operations/?q=no-such-thing",
        f"/operations/?cursor={deep_cursor}",
        f"/operations/{op.uuid}/",
        "/servers/",
        "/servers/?q=srv-009",
        "/servers/?status=offline&sort=-last_seen",
        f"/servers/{server.uuid}/",
        "/account/activity/",
        "/account/tokens/",
    ]
    api = [
        "/api/v1/operations/",
        "/api/v1/operations/?state=failed",
        f"/api/v1/operations/?cursor={deep_cursor}",
        "/api/v1/audit/",
        "/api/v1/servers/",
        "/api/v1/users/",
        "/api/v1/firewall-rules/",
        "/api/v1/tokens/",
    ]
    changelists = [
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for model in admin.site._registry
    ]
    changelists += ["/admin/core/operation/?q=srv-00077", "/admin/core/auditentry/?q=object+77"]
    out = [("admin@bench.test", url) for url in portal + api + changelists]
    reseller = ("/", "/operations/", "/servers/", "/api/v1/operations/")
    out += [("r1@bench.test", url) for url in reseller]
    out += [("c1@bench.test", url) for url in ("/", "/operations/", "/account/activity/")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the sizes")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    seed(args.scale)
    clients: dict[str, Client] = {}
    rows = []
    print(f"{'ms':>8} {'cpu ms':>7} {'KB':>7} {'queries':>7}  who  page")
    for email, url in pages():
        client = clients.setdefault(email, signed_in(email))
        ms, cpu, kb, queries = measure(client, url)
        who = email.split("@")[0]
        rows.append((ms, kb, queries, f"{who} {url}"))
        print(f"{ms:8.1f} {cpu:7.1f} {kb:7.1f} {queries:7d}  {who:<4} {url}", flush=True)
    worst = max(rows)
    print(
        json.dumps(
            {
                "pages": len(rows),
                "worst_ms": round(worst[0], 1),
                "worst_page": worst[3],
                "max_queries": max(r[2] for r in rows),
                "max_kb": round(max(r[1] for r in rows), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
