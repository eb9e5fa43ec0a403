"""Benchmark mail: N mailboxes made through the API and applied to a private Postfix +
Dovecot + OpenDKIM over a private sshd, one mailbox changed and applied, then N messages
delivered over SMTP until every one is in its maildir.

    .venv/bin/python bench/mail.py [--mailboxes 1000]

Prints figures, then one JSON line: mailboxes, api_create_s (the N API requests),
create_apply_s (those plus the apply), one_change_apply_s, deliver_1000_s (N messages sent
and stored; the key keeps its name whatever N is).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
os.environ["PANEL_DEBUG"] = "1"
os.environ["PANEL_VAR_DIR"] = tempfile.mkdtemp(prefix="uhp-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

PASSWORD = "bench mailbox password"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=1000)
    n = parser.parse_args().mailboxes
    call_command("migrate", verbosity=0)

    from django.conf import settings
    from django.core.cache import cache
    from django.test import Client

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]

    from accounts.models import Role, User
    from mail import services
    from mail.models import Mailbox
    from servers import connection
    from servers.engine import registry
    from servers.engine.engine import Engine
    from servers.engine.state import clear_dirty, dirty
    from servers.models import Server
    from tests.integration.conftest import (
        SSH_HOST,
        free_port,
        start_sshd,
        stop_pidfile,
        wait_port,
        world_readable_tmp,
    )
    from tests.integration.mail_stack import mail_stack

    sshd_dir = world_readable_tmp("uhp-bench-sshd-")
    port = free_port(SSH_HOST)
    sshd = start_sshd(sshd_dir, SSH_HOST, port)
    wait_port(SSH_HOST, port)
    figures: dict = {"mailboxes": n}
    try:
        with mail_stack(free_port()) as stack:
            admin = User.objects.create_user("bench-admin@example.com", None, role=Role.ADMIN)
            owner = User.objects.create_user("bench@example.com", None, role=Role.CUSTOMER)
            server = Server.objects.create(
                name="bench-mail",
                address=SSH_HOST,
                ssh_port=port,
                owner=admin,
                private_key=sshd.private_key,
                profile=stack["profile"],
            )
            from websites.models import Plan, Subscription

            Subscription.objects.create(user=owner, plan=Plan.objects.create(name="bench"))
            client = Client()
            client.force_login(owner, backend="django.contrib.auth.backends.ModelBackend")
            t = connection.open_transport(server)

            def apply_dirty() -> float:
                """What servers.tasks.run_apply does, without the Operation around it."""
                server.refresh_from_db()
                units, upto = dirty(server)
                start = time.perf_counter()
                result = Engine(server, t).apply(units)
                registry.report(server, result.ok_units, result.failed_units)
                clear_dirty(server, upto)
                if result.failed_units:
                    raise SystemExit(f"failed: {result.failed_units}")
                return time.perf_counter() - start

            start = time.perf_counter()
            r = client.post(
                "/api/v1/mail-domains/",
                {"domain": "bench.example.test", "server": str(server.uuid)},
                content_type="application/json",
            )
            assert r.status_code == 201, r.content[:300]
            domain_uuid = r.json()["uuid"]
            for i in range(n):
                if i % 500 == 0:
                    cache.clear()  # the API's per-user rate limit: a benchmark is not abuse
                r = client.post(
                    "/api/v1/mailboxes/",
                    {"domain": domain_uuid, "local_part": f"u{i:05d}", "password": PASSWORD},
                    content_type="application/json",
                )
                assert r.status_code == 201, r.content[:300]
            figures["api_create_s"] = round(time.perf_counter() - start, 3)
            with registry.only_providers(
                *[p for p in registry.providers() if p.unit_prefix == "mail"]
            ):
                figures["create_apply_s"] = round(figures["api_create_s"] + apply_dirty(), 3)
                box = Mailbox.objects.get(local_part="u00000")
                services.do_update_mailbox(box, actor=owner, data={"quota_mb": 2048})
                figures["one_change_apply_s"] = round(apply_dirty(), 3)
            assert Mailbox.objects.filter(status="active").count() == n

            vmail = stack["vmail"] / "bench.example.test"
            start = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", stack["smtp_port"], timeout=60) as smtp:
                for i in range(n):
                    msg = EmailMessage()
                    msg["From"], msg["To"] = "sender@example.net", f"u{i:05d}@bench.example.test"
                    msg["Subject"] = f"bench {i}"
                    msg.set_content("benchmark message")
                    smtp.send_message(msg)
            sent = time.perf_counter() - start
            deadline = time.monotonic() + 600
            while True:
                stored = sum(1 for _ in vmail.glob("*/Maildir/new/*"))
                if stored >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            # Not every message arrived within the wait: no delivery time to claim.
            done = stored >= n
            figures["deliver_1000_s"] = round(time.perf_counter() - start, 3) if done else None
            figures["smtp_accept_s"] = round(sent, 3)
            figures["stored"] = stored
    finally:
        stop_pidfile(sshd_dir / "sshd.pid")
        shutil.rmtree(sshd_dir, ignore_errors=True)
    for k, v in figures.items():
        print(f"{k}: {v}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
