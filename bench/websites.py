"""Benchmark websites end to end on one server: private sshd + nginx on loopback.

Creates N static sites through the API as a customer (each a pending row and a queued
Operation; the operations are not run), applies them all with the engine, changes one site
and applies again, then times one new site from the API call until it answers over HTTP
(the create Operation run inline: system account, web root, vhost, reload, health check),
and the customer's website list with N sites.

    .venv/bin/python bench/websites.py [--sites 1000]

Last line: one JSON object with sites, api_create_p50_ms, api_create_p95_ms, apply_all_s,
create_to_serving_s (goal <= 2 s), one_change_apply_s, one_change_files_written,
list_page_ms (goal < 100 ms), list_page_queries.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
os.environ["PANEL_VAR_DIR"] = tempfile.mkdtemp(prefix="uhp-bench-sites-")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdefghij")
os.environ.setdefault("PANEL_ENCRYPTION_KEYS", "8rK3bTz3W0Hk1pVx0fYb3cFvHqYp9yq0Zl5H6mB2T3Q=")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("PANEL_AUDIT_KEYS", "bench-audit-key-not-for-production-5f2b9c1e7a4d")
os.environ["PANEL_DEBUG"] = "0"
os.environ["PANEL_SECURE"] = "0"
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

ACCOUNT = "benchweb"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=1000)
    n = parser.parse_args().sites
    call_command("migrate", verbosity=0)

    from django.db import connection as db
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django_q.conf import Conf

    from accounts.models import Role, User
    from core.models import Operation
    from core.operations import execute_operation
    from servers import connection
    from servers.engine.engine import Engine
    from servers.engine.state import clear_dirty, dirty
    from servers.models import Server
    from tests.integration.conftest import (
        SSH_HOST,
        free_port,
        start_nginx,
        start_sshd,
        stop_pidfile,
        wait_port,
        world_readable_tmp,
    )
    from websites import plans
    from websites.models import Website

    subprocess.run(["userdel", "-f", ACCOUNT], capture_output=True, check=False)
    sshd_dir = world_readable_tmp("uhp-bench-sshd-")
    port = free_port(SSH_HOST)
    sshd = start_sshd(sshd_dir, SSH_HOST, port)
    (sshd_dir / "sshd.d").mkdir()
    with open(sshd_dir / "sshd_config", "a") as conf:
        conf.write(f"Include {sshd_dir}/sshd.d/*.conf\n")
    wait_port(SSH_HOST, port)
    nginx = start_nginx(world_readable_tmp("uhp-bench-nginx-"))
    homes = Path(tempfile.mkdtemp(prefix="uhp-bench-homes-", dir="/var/lib"))
    homes.chmod(0o755)
    figures: dict = {"sites": n}
    try:
        admin = User.objects.create_user("admin@bench.example", None, role=Role.ADMIN)
        customer = User.objects.create_user(f"{ACCOUNT}@example.com", None, role=Role.CUSTOMER)
        assert customer.account_name == ACCOUNT, customer.account_name
        plan = plans.do_create_plan(actor=admin, data={"name": "Big", "websites": n + 10})
        plans.do_subscribe(customer, plan, actor=admin)
        server = Server.objects.create(
            name="bench",
            address=SSH_HOST,
            ssh_port=port,
            owner=admin,
            private_key=sshd.private_key,
            profile={
                **nginx.profile(),
                "webroot_base": str(homes),
                "sshd_conf": str(sshd_dir / "sshd_config"),
                "sshd_dir": str(sshd_dir / "sshd.d"),
                "sshd_test": ["/usr/sbin/sshd", "-t", "-f", "{conf}"],
                "sshd_pid_file": str(sshd_dir / "sshd.pid"),
            },
        )
        client = Client()
        client.force_login(customer, backend="django.contrib.auth.backends.ModelBackend")
        times = []
        for i in range(n):
            start = time.perf_counter()
            resp = client.post(
                "/api/v1/websites/",
                {"domain": f"site{i:05d}.bench.test", "server": str(server.uuid)},
                content_type="application/json",
            )
            times.append((time.perf_counter() - start) * 1000)
            assert resp.status_code == 201, resp.content
        times.sort()
        figures["api_create_p50_ms"] = statistics.median(times)
        figures["api_create_p95_ms"] = times[int(len(times) * 0.95) - 1]
        Operation.objects.filter(state=Operation.State.QUEUED).update(
            state=Operation.State.CANCELLED
        )

        t = connection.open_transport(server)

        def apply_dirty():
            server.refresh_from_db()
            units, upto = dirty(server)
            start = time.perf_counter()
            result = Engine(server, t).apply(units)
            took = time.perf_counter() - start
            clear_dirty(server, upto)
            return took, result

        figures["apply_all_s"], full = apply_dirty()
        assert not {u for u in full.failed_units if u.startswith("website:")}, full.failed_units
        site = Website.objects.get(domain=f"site{n // 2:05d}.bench.test")
        client.patch(
            f"/api/v1/websites/{site.uuid}/",
            {"options": {"gzip": True}},
            content_type="application/json",
        )
        figures["one_change_apply_s"], one = apply_dirty()
        figures["one_change_files_written"] = len(one.written)

        Conf.SYNC = True  # the create Operation runs inline, as a worker would run it
        start = time.perf_counter()
        resp = client.post(
            "/api/v1/websites/",
            {"domain": "new.bench.test", "server": str(server.uuid)},
            content_type="application/json",
        )
        op = Operation.objects.filter(kind="website.create").order_by("-id").first()
        if op.state == Operation.State.QUEUED:
            execute_operation(op.pk)
        while nginx.get("new.bench.test")[0] != 200:
            if time.perf_counter() - start > 60:
                why = Website.objects.get(domain="new.bench.test").status_message
                raise SystemExit(f"new site never answered: {why}")
            time.sleep(0.01)
        figures["create_to_serving_s"] = time.perf_counter() - start
        Conf.SYNC = False

        client.get("/websites/")
        list_times = []
        for _ in range(5):
            with CaptureQueriesContext(db) as queries:
                start = time.perf_counter()
                assert client.get("/websites/").status_code == 200
                list_times.append((time.perf_counter() - start) * 1000)
        figures["list_page_ms"] = statistics.median(list_times)
        figures["list_page_queries"] = len(queries)

        print(f"websites benchmark: {n} sites over SSH to {SSH_HOST}:{port}")
        for key, value in figures.items():
            print(
                f"  {key:<26} {value:.3f}" if isinstance(value, float) else f"  {key:<26} {value}"
            )
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})
        )
    finally:
        stop_pidfile(sshd_dir / "sshd.pid")
        stop_pidfile(nginx.prefix / "nginx.pid")
        subprocess.run(["userdel", "-f", ACCOUNT], capture_output=True, check=False)
        subprocess.run(["groupdel", ACCOUNT], capture_output=True, check=False)
        shutil.rmtree(homes, ignore_errors=True)


if __name__ == "__main__":
    main()
