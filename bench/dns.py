"""Benchmark the DNS app: import a zone of N records from a zone file, publish it to a
private BIND and a private PowerDNS, change one record and publish again, open the zone
editor (at N records and at 10).

    .venv/bin/python bench/dns.py [--records 50000]

Prints figures, then one JSON line: records, import_s, publish_bind_s, publish_pdns_s,
one_change_publish_ms (the slower of the two nameservers), one_change_records_sent (record
sets sent, the SOA not counted), editor_page_ms, editor_page_kb, editor_page_10_records_ms.
Goals at 50,000: one record set sent, one_change_publish_ms <= 100, editor page < 100 ms and
< 100 KB.
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
# Run as a script, this file's directory comes first on the path, and this file is named
# like the dns package: take the directory out so ``import dns`` finds the package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
os.environ["PANEL_DEBUG"] = "1"
os.environ["PANEL_VAR_DIR"] = tempfile.mkdtemp(prefix="uhp-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    n = parser.parse_args().records
    call_command("migrate", verbosity=0)

    from dns import services
    from dns.models import Record, Zone
    from dns.publishers import PUBLISHER
    from dns.zonefiles import do_import_zone_file
    from servers.engine import registry
    from servers.engine.publisher import publish
    from tests.conftest import login, make_user
    from tests.integration.bind import remove
    from tests.integration.dns_servers import remove_powerdns, start_panel_bind, start_powerdns

    admin = make_user("bench@example.com", "admin")
    bind = start_panel_bind(Path(tempfile.mkdtemp(prefix="uhp-bench-bind-")))
    pdns = start_powerdns(Path(tempfile.mkdtemp(prefix="uhp-bench-pdns-")))
    try:
        group = services.do_save_group(actor=admin, data={"name": "bench", "is_default": True})
        ns_bind = services.do_save_nameserver(
            actor=admin,
            data={
                "group": group,
                "hostname": "ns1.example.net",
                "kind": "bind",
                "host": bind.host,
                "port": bind.port,
                "tsig_key_name": bind.key_name,
                "tsig_secret": bind.secret,
                "rndc_port": bind.control_port,
                "rndc_secret": bind.rndc_secret,
                "zone_dir": str(bind.zone_dir),
            },
        )
        ns_pdns = services.do_save_nameserver(
            actor=admin,
            data={
                "group": group,
                "hostname": "ns2.example.net",
                "kind": "powerdns",
                "host": pdns.host,
                "port": pdns.port,
                "api_url": pdns.api_url,
                "api_key": pdns.api_key,
            },
        )
        publisher = registry.publisher(PUBLISHER)
        # Operations would run these in a worker; the benchmark runs the same publish inline.
        from django.db import transaction

        def publish_all(ns) -> float:
            start = time.perf_counter()
            result = publish(publisher, ns.key)
            assert not result.failed_units, result.failed_units
            return time.perf_counter() - start

        zone = services.do_create_zone(actor=admin, data={"name": "bench.example"})
        text = "$TTL 3600\n" + "".join(
            f"h{i} IN A 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}\n" for i in range(n)
        )
        start = time.perf_counter()
        with transaction.atomic():
            do_import_zone_file(zone, text, actor=admin)
        import_s = time.perf_counter() - start
        print(f"import {n} records: {import_s:.2f} s")

        publish_bind_s = publish_all(ns_bind)
        print(f"publish to BIND: {publish_bind_s:.2f} s")
        publish_pdns_s = publish_all(ns_pdns)
        print(f"publish to PowerDNS: {publish_pdns_s:.2f} s")

        rec = Record.objects.get(zone=zone, name=f"h{n // 2}")
        services.do_update_record(rec, actor=admin, data={"content": "10.99.99.99"})
        sent = {}
        times = []
        for ns in (ns_bind, ns_pdns):
            start = time.perf_counter()
            result = publish(publisher, ns.key)
            times.append(time.perf_counter() - start)
            sent[ns.kind] = len([u for u in result.changed if u.startswith("rrset:")])
        one_ms = max(times) * 1000
        print(f"one change: {one_ms:.1f} ms, record sets sent {sent}")

        client = login(admin)

        def page(z: Zone) -> tuple[float, int]:
            client.get(z.get_absolute_url())
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                resp = client.get(z.get_absolute_url())
                best = min(best, time.perf_counter() - start)
            assert resp.status_code == 200, resp.status_code
            return best * 1000, len(resp.content)

        editor_ms, editor_bytes = page(zone)
        small = services.do_create_zone(actor=admin, data={"name": "small.example"})
        for i in range(10):
            services.do_create_record(
                small, actor=admin, data={"name": f"h{i}", "type": "A", "content": "10.0.0.1"}
            )
        small_ms, _ = page(small)
        print(
            f"editor: {editor_ms:.1f} ms, {editor_bytes / 1024:.1f} KB; "
            f"10 records: {small_ms:.1f} ms"
        )
        print(
            json.dumps(
                {
                    "records": n,
                    "import_s": round(import_s, 3),
                    "publish_bind_s": round(publish_bind_s, 3),
                    "publish_pdns_s": round(publish_pdns_s, 3),
                    "one_change_publish_ms": round(one_ms, 1),
                    "one_change_records_sent": max(sent.values()),
                    "editor_page_ms": round(editor_ms, 1),
                    "editor_page_kb": round(editor_bytes / 1024, 1),
                    "editor_page_10_records_ms": round(small_ms, 1),
                }
            )
        )
    finally:
        remove(bind)
        remove_powerdns(pdns)


if __name__ == "__main__":
    main()
