"""Benchmark the apply engine: 1,000 vhosts to a fresh server over SSH, then change one.

Prints wall time, files written and reloads for each apply, and ratios against a baseline
measured in the same run: writing the same 1,000 files with plain SFTP (no comparison,
validation, reload or manifest). Needs sshd and nginx (Debian packages). Run:

    .venv/bin/python bench/apply.py [--sites 1000]
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=1000)
    n = parser.parse_args().sites
    call_command("migrate", verbosity=0)

    from accounts.models import Role, User
    from servers import connection
    from servers.apply import Engine
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
    from websites.models import Website
    from websites.nginx import render_vhost

    sshd_dir = world_readable_tmp("uhp-bench-sshd-")
    port = free_port(SSH_HOST)
    sshd = start_sshd(sshd_dir, SSH_HOST, port)
    wait_port(SSH_HOST, port)
    nginx_dir = world_readable_tmp("uhp-bench-nginx-")
    nginx = start_nginx(nginx_dir)
    try:
        owner = User.objects.create_user("bench@example.com", None, role=Role.ADMIN)
        server = Server.objects.create(
            name="bench",
            address=SSH_HOST,
            ssh_port=port,
            owner=owner,
            private_key=sshd.private_key,
            profile=nginx.profile(),
        )
        Website.objects.bulk_create(
            Website(domain=f"site{i:04d}.example.com", server=server, owner=owner) for i in range(n)
        )
        t = connection.open_transport(server)

        # Baseline: the same files, written with plain SFTP into a scratch directory.
        scratch = nginx_dir / "baseline"
        scratch.mkdir()
        sites = list(Website.objects.filter(server=server))
        start = time.perf_counter()
        for site in sites:
            t.write_file(
                f"{scratch}/{site.domain}.conf",
                render_vhost(site, "127.0.0.1:1", "/srv/www").encode(),
            )
        baseline = time.perf_counter() - start

        rows = []
        for label, change in [
            ("fresh server", None),
            ("nothing changed", None),
            ("one site changed", f"site{n // 2:04d}.example.com"),
        ]:
            if change:
                Website.objects.filter(domain=change).update(aliases=f"www.{change}")
            server.refresh_from_db()
            start = time.perf_counter()
            result = Engine(server, t).apply()
            took = time.perf_counter() - start
            rows.append((label, took, len(result.written), len(result.reloaded)))

        print(f"apply benchmark: {n} vhosts over SSH to {SSH_HOST}:{port}")
        print(f"  baseline (plain SFTP writes of {n} files): {baseline:8.2f} s")
        for label, took, written, reloads in rows:
            print(
                f"  {label:<20} {took:8.2f} s  files written {written:5d}  reloads {reloads}"
                f"  ({took / baseline:5.2f} x baseline)"
            )
        if rows[2][2] != 1:
            raise SystemExit(f"expected exactly one file written, got {rows[2][2]}")
    finally:
        stop_pidfile(sshd_dir / "sshd.pid")
        stop_pidfile(nginx_dir / "nginx.pid")


if __name__ == "__main__":
    main()
