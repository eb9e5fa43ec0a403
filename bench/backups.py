"""Benchmark backups: back up N sites holding SIZE MB in all through the panel (the
``backup.run`` Operation over SSH, with restic on the server), then an incremental run
after rewriting 1 % of the files, then restore one site in place. The baseline, measured
in the same run, is plain ``restic backup`` of the same home into a fresh repository.

    .venv/bin/python bench/backups.py [--sites 100] [--size-mb 1024]

Prints figures, then one JSON line: sites, full_s, incremental_s, incremental_added_mb,
restore_site_s, restic_raw_full_s (goal: full_s within 1.3x of restic_raw_full_s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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

HOST = "127.0.0.42"
NAME = "uhpbench"
FILE_MB = 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    from django_q.conf import Conf

    Conf.SYNC = True  # Operations run inline, through the real worker code path

    from accounts.models import Role, User
    from backups import services
    from backups.models import BackupRun
    from core.models import Operation
    from servers.connection import open_transport
    from tests.integration.web_stack import WebStack
    from websites import sysaccounts
    from websites.models import SystemAccount, Website

    stack = WebStack(HOST, NAME)
    repos = Path(tempfile.mkdtemp(prefix="uhp-bench-restic-", dir="/var/tmp"))
    try:
        admin = User.objects.create_user("admin@example.com", "x" * 20, role=Role.ADMIN)
        customer = User.objects.create_user(f"{NAME}@example.com", "x" * 20, role=Role.CUSTOMER)
        server = stack.server(admin)
        account = SystemAccount.objects.create(server=server, user=customer, name=NAME)
        t = open_transport(server)
        sysaccounts.ensure(t, server, NAME)
        files_per_site = max(1, args.size_mb // args.sites // FILE_MB)
        all_files = []
        started = time.monotonic()
        for i in range(args.sites):
            domain = f"site{i:03d}.example.com"
            sysaccounts.ensure_site(t, server, NAME, domain)
            Website.objects.create(domain=domain, server=server, owner=customer, status="active")
            public = stack.homes / NAME / "sites" / domain / "public"
            for j in range(files_per_site):
                path = public / f"file{j:03d}.bin"
                path.write_bytes(os.urandom(FILE_MB << 20))
                all_files.append(path)
        subprocess.run(["chown", "-R", f"{NAME}:{NAME}", str(stack.homes / NAME / "sites")])
        total_mb = len(all_files) * FILE_MB
        print(
            f"{args.sites} sites, {len(all_files)} files, {total_mb} MB in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        home = str(stack.homes / NAME)

        # Baseline: plain restic over the same home, in a fresh repository.
        raw = repos / "raw"
        password = repos / "password"
        password.write_text("bench-password-0123456789")
        password.chmod(0o600)
        env = {**os.environ, "RESTIC_REPOSITORY": str(raw), "RESTIC_PASSWORD_FILE": str(password)}
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        started = time.monotonic()
        subprocess.run(
            ["restic", "backup", "--json", home], env=env, check=True, capture_output=True
        )
        raw_s = time.monotonic() - started
        print(f"restic raw full: {raw_s:.2f} s", flush=True)

        target = services.do_create_target(
            actor=admin,
            data={"name": "bench", "kind": "local", "server": server, "path": str(repos / "panel")},
        )
        target.refresh_from_db()
        assert target.status == "ready", target.status_message
        job = services.do_create_job(actor=admin, data={"account": account, "target": target})

        def backup() -> tuple[float, BackupRun]:
            started = time.monotonic()
            op = services.start_backup(job, actor=admin)
            elapsed = time.monotonic() - started
            op = Operation.objects.get(pk=op.pk)
            assert op.state == "succeeded", op.error
            return elapsed, BackupRun.objects.filter(job=job).order_by("-started_at").first()

        full_s, full = backup()
        print(
            f"panel full: {full_s:.2f} s ({full.files} files, "
            f"{full.size_bytes / 2**20:.0f} MiB, {full.bytes_added / 2**20:.0f} MiB added)",
            flush=True,
        )
        changed = all_files[::100][: max(1, len(all_files) // 100)]
        for path in changed:
            path.write_bytes(os.urandom(FILE_MB << 20))
        incremental_s, incremental = backup()
        added_mb = incremental.bytes_added / 2**20
        print(
            f"panel incremental after {len(changed)} files changed: {incremental_s:.2f} s, "
            f"{added_mb:.1f} MiB added",
            flush=True,
        )
        site = "site000.example.com"
        shutil.rmtree(stack.homes / NAME / "sites" / site / "public")
        started = time.monotonic()
        op = services.do_restore(
            job,
            actor=admin,
            data={"run": incremental, "kind": "files", "site": site, "destination": "original"},
            dry_run=False,
        )
        restore_s = time.monotonic() - started
        op = Operation.objects.get(pk=op.pk)
        assert op.state == "succeeded", op.error
        restored = list((stack.homes / NAME / "sites" / site / "public").iterdir())
        assert len(restored) >= files_per_site, restored
        print(f"restore one site: {restore_s:.2f} s ({op.message})", flush=True)
        load = os.getloadavg()
        print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
        print(f"full_s / restic_raw_full_s = {full_s / raw_s:.2f} (goal <= 1.3)")
        print(
            json.dumps(
                {
                    "sites": args.sites,
                    "full_s": round(full_s, 2),
                    "incremental_s": round(incremental_s, 2),
                    "incremental_added_mb": round(added_mb, 1),
                    "restore_site_s": round(restore_s, 2),
                    "restic_raw_full_s": round(raw_s, 2),
                }
            )
        )
    finally:
        stack.stop()
        shutil.rmtree(repos, ignore_errors=True)


if __name__ == "__main__":
    main()
