"""Benchmark the apply engine against a private nginx over a private sshd.

Runs what the apply operation runs (the dirty units recorded by services, then the engine)
for: a full apply of N vhosts to a fresh server, a no-op, a one-site change, 400 changed
valid sites, and the same 400 with one invalid among them. The baseline, measured in the same
run by a plain script over the same connection, is nginx's own floor for one change: `nginx
-t` of the full tree, a HUP, and waiting until the new worker generation serves.

    .venv/bin/python bench/apply.py [--sites 1000]

Prints figures, then one JSON line: sites, full_s, noop_s, one_change_s,
one_change_files_written, one_change_round_trips, nginx_floor_s, clean_400_s,
bad_among_all_changed_s (goals at 10,000 sites: noop_s <= 0.2, one_change_s <= nginx_floor_s
+ 0.3, one file written, bad_among_all_changed_s <= 5 x clean_400_s).
"""

from __future__ import annotations

import argparse
import json
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

# A plain script, no engine: validate the full tree, HUP, wait for a new worker generation,
# then for the changed site to answer. Args: PREFIX CONF PORT HOST.
FLOOR_SCRIPT = r"""
prefix=$1 conf=$2 port=$3 host=$4
nginx -t -q -p "$prefix/" -c "$conf" || exit 1
pid=$(cat "$prefix/nginx.pid")
old=$(ps -o pid= --ppid "$pid" | tr -d ' ' | sort | tr '\n' ' ')
kill -HUP "$pid"
while [ "$(ps -o pid= --ppid "$pid" | tr -d ' ' | sort | tr '\n' ' ')" = "$old" ]; do
  sleep 0.01
done
curl -s -o /dev/null --connect-to "::127.0.0.1:$port" "http://$host/" || exit 1
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=1000)
    n = parser.parse_args().sites
    call_command("migrate", verbosity=0)

    from accounts.models import Role, User
    from servers import connection
    from servers.engine.engine import Engine
    from servers.engine.state import clear_dirty, dirty, mark_dirty
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

    sshd_dir = world_readable_tmp("uhp-bench-sshd-")
    port = free_port(SSH_HOST)
    sshd = start_sshd(sshd_dir, SSH_HOST, port)
    wait_port(SSH_HOST, port)
    nginx_dir = world_readable_tmp("uhp-bench-nginx-")
    nginx = start_nginx(nginx_dir)
    figures: dict = {"sites": n}
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
            Website(domain=f"site{i:05d}.example.com", server=server, owner=owner) for i in range(n)
        )
        t = connection.open_transport(server)

        def apply_dirty():
            """What servers.tasks.apply_server does, without the Operation around it."""
            server.refresh_from_db()
            units, upto = dirty(server)
            trips = t.round_trips
            start = time.perf_counter()
            if units == set():
                return time.perf_counter() - start, None, 0
            result = Engine(server, t).apply(units)
            took = time.perf_counter() - start
            clear_dirty(server, upto)
            return took, result, t.round_trips - trips

        mark_dirty(server, None)
        figures["full_s"], full, _ = apply_dirty()
        assert len(full.written) == n and not full.failed_units, full.failed_units
        figures["noop_s"], none, _ = apply_dirty()
        assert none is None
        start = time.perf_counter()
        Engine(server, t).apply()
        figures["noop_full_render_s"] = time.perf_counter() - start

        site = Website.objects.get(domain=f"site{n // 2:05d}.example.com")
        site.aliases = f"www.{site.domain}"
        site.save()
        mark_dirty(server, {site.unit})
        figures["one_change_s"], one, trips = apply_dirty()
        figures["one_change_files_written"] = len(one.written)
        figures["one_change_round_trips"] = trips

        floors = []
        for _ in range(3):
            start = time.perf_counter()
            t.run(
                [
                    "sh",
                    "-c",
                    FLOOR_SCRIPT,
                    "floor",
                    str(nginx.prefix),
                    str(nginx.conf),
                    str(nginx.port),
                    site.domain,
                ],
                timeout=120,
            ).check()
            floors.append(time.perf_counter() - start)
        figures["nginx_floor_s"] = sorted(floors)[1]

        batch = list(Website.objects.filter(server=server).order_by("domain")[:400])
        for s in batch:
            s.aliases = f"alt.{s.domain}"
        Website.objects.bulk_update(batch, ["aliases"])
        mark_dirty(server, {s.unit for s in batch})
        figures["clean_400_s"], clean, _ = apply_dirty()
        assert len(clean.written) == 400 and not clean.failed_units

        for s in batch:
            s.aliases = f"alt2.{s.domain}"
        batch[123].custom_directives = "no_such_directive on;"
        Website.objects.bulk_update(batch, ["aliases", "custom_directives"])
        mark_dirty(server, {s.unit for s in batch})
        figures["bad_among_all_changed_s"], bad, _ = apply_dirty()
        assert set(bad.failed_units) == {batch[123].unit} and len(bad.written) == 399

        print(f"apply benchmark: {n} vhosts over SSH to {SSH_HOST}:{port}")
        for key, value in figures.items():
            print(
                f"  {key:<28} {value:.3f}" if isinstance(value, float) else f"  {key:<28} {value}"
            )
        floor = figures["nginx_floor_s"]
        print(f"  one change over nginx's floor: +{figures['one_change_s'] - floor:.3f} s")
        ratio = figures["bad_among_all_changed_s"] / figures["clean_400_s"]
        print(f"  one bad among 400 changed: {ratio:.2f} x the clean 400")
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})
        )
    finally:
        stop_pidfile(sshd_dir / "sshd.pid")
        stop_pidfile(nginx_dir / "nginx.pid")


if __name__ == "__main__":
    main()
