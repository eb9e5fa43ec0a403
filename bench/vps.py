"""Benchmark the VPS app on libvirt's test driver: N VPS rows across 10 hypervisors, the
customer's list page and the API list at N, one inventory refresh of a hypervisor with 500
domains, and one create from the service call until the domain runs.

    .venv/bin/python bench/vps.py [--vps 10000]

Prints figures, then one JSON line: vps, list_page_ms, list_page_queries, api_list_ms,
refresh_500_domains_s, create_to_running_s. Goals at 10,000: list page and API < 100 ms;
refresh of 500 domains <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on the path, and bench/dns.py is named
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


def timed(func, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def node_xml(path: Path, names: list[str]) -> None:
    domains = "".join(
        f"<domain type='test'><name>{n}</name><memory>1048576</memory><vcpu>1</vcpu>"
        "<os><type>hvm</type></os></domain>"
        for n in names
    )
    path.write_text(
        "<node><cpu><nodes>1</nodes><sockets>2</sockets><cores>16</cores><threads>2</threads>"
        "<active>64</active><mhz>2000</mhz><model>x86_64</model></cpu>"
        f"<memory>{1 << 30}</memory>{domains}<pool type='dir'><name>default-pool</name>"
        "<target><path>/default-pool</path></target></pool></node>"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vps", type=int, default=10_000)
    n = parser.parse_args().vps
    call_command("migrate", verbosity=0)

    import libvirt
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django_q.conf import Conf

    from core.operations import execute_operation
    from servers.models import Server
    from tests.conftest import login, make_user
    from vps import libvirt_adapter as lv
    from vps import services, tasks
    from vps.models import Hypervisor, Vps, VpsPlan

    admin = make_user("bench-admin@example.com", "admin")
    customer = make_user("bench@example.com", "customer")
    work = Path(tempfile.mkdtemp(prefix="uhp-bench-vps-"))
    plan = VpsPlan.objects.create(
        name="Bench", vcpus=1, memory_mib=1024, disk_gib=10, ip_count=0, ipv6=False
    )
    hvs = []
    for i in range(10):
        server = Server.objects.create(
            name=f"hv{i}", address=f"198.51.100.{i + 1}", transport="local", owner=admin
        )
        hvs.append(
            Hypervisor.objects.create(
                server=server,
                uri=f"test://{work}/node{i}.xml",
                storage_pool="default-pool",
                status="online",
            )
        )
    start = time.perf_counter()
    Vps.objects.bulk_create(
        [
            Vps(
                hostname=f"vps{i}",
                owner=customer,
                plan=plan,
                hypervisor=hvs[i % 10],
                state=Vps.State.RUNNING,
            )
            for i in range(n)
        ],
        batch_size=2000,
    )
    print(f"{n} VPS rows in {time.perf_counter() - start:.1f} s")

    # One hypervisor with 500 domains (the first 500 of its VPSes).
    mine = list(Vps.objects.filter(hypervisor=hvs[0]).order_by("pk")[:500])
    node_xml(work / "node0.xml", [v.domain_name for v in mine])
    for i in range(1, 10):
        node_xml(work / f"node{i}.xml", [])

    def refresh():
        with lv.connect(hvs[0]) as session:
            cap, domains = session.capacity(), session.domains()
        tasks.store_inventory(hvs[0], cap, domains)

    refresh_s = timed(refresh, 3)
    print(f"inventory refresh, 500 domains: {refresh_s:.2f} s")

    client = login(customer)
    assert client.get("/vps/").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/vps/")
    assert page.status_code == 200 and b"vps-table" in page.content, page.status_code
    with CaptureQueriesContext(connection) as api_queries:
        client.get("/api/v1/vps/?limit=50")
    list_queries = len(queries)
    print(f"API list: {len(api_queries)} queries")
    if os.environ.get("BENCH_SHOW_QUERIES"):
        for q in api_queries.captured_queries:
            print(q["sql"][:160])
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        with cProfile.Profile() as prof:
            client.get("/vps/")
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    list_ms = timed(lambda: client.get("/vps/")) * 1000
    api_ms = timed(lambda: client.get("/api/v1/vps/?limit=50")) * 1000
    print(f"list page: {list_ms:.1f} ms, {list_queries} queries; API list: {api_ms:.1f} ms")

    # One create on the shared test driver, from the service call until it runs.
    held = libvirt.open("test:///default")  # the shared driver lives while one is open
    server = Server.objects.create(
        name="hv-create", address="198.51.100.99", transport="local", owner=admin
    )
    hv = Hypervisor.objects.create(
        server=server,
        uri="test:///default",
        storage_pool="default-pool",
        status="online",
        cpus=16,
        memory_mib=65536,
        storage_gib=100,
    )
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(work / "i.qcow2"), "64M"], check=True
    )
    with (work / "i.qcow2").open("rb") as f:
        image = services.do_create_image(actor=admin, data={"name": "Bench"}, upload=f)
    Conf.SYNC = True
    from django.db import transaction

    start = time.perf_counter()
    with transaction.atomic():
        vps = services.do_create_vps(
            actor=admin,
            data={"hostname": "new", "plan": plan, "image": image, "hypervisor": hv},
        )
    from core.models import Operation

    op = Operation.objects.filter(target_id=str(vps.uuid)).latest("created_at")
    if op.state == "queued":
        execute_operation(op.pk)
    vps.refresh_from_db()
    create_s = time.perf_counter() - start
    assert vps.state == Vps.State.RUNNING, vps.state_message
    held.close()
    print(f"create to running: {create_s:.2f} s")

    print(
        json.dumps(
            {
                "vps": n,
                "list_page_ms": round(list_ms, 1),
                "list_page_queries": list_queries,
                "api_list_ms": round(api_ms, 1),
                "refresh_500_domains_s": round(refresh_s, 3),
                "create_to_running_s": round(create_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
