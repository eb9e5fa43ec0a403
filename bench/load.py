"""Load on the scale-out layout: 200 clients against two web processes and two workers on
PostgreSQL and Redis behind nginx (TLS), then the same load on one web process.

Each client is a thread looping for --seconds over a mix of requests (every loop bounded,
everything on loopback): API list (operations, servers), API detail (a server), a portal page
(the servers list), create-operation (test connection, run by the workers) and websocket
subscribe (the operations page's live socket, until it says ready), with a think time
between requests (--think seconds on average, random). Latency is measured by the clients,
CPU time per request from /proc for the web processes only (nginx, PostgreSQL, Redis and the
clients themselves are left out). Between the phases nginx is reloaded with one upstream.
The client threads are spread over --procs processes, so that one interpreter's lock does not
add queueing of its own to the latencies measured (each phase also reports the clients' CPU
per request, to show what they cost the machine). Each phase reports p50/p95 per request
kind as well ("kinds").

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/load.py
    .venv/bin/python bench/load.py --clients 50 --seconds 20     # a quick look

The last line is one JSON object: {"clients", "requests", "rps", "p50_ms", "p95_ms", "errors",
"web_cpu_ms_per_request", "single_process_rps", "single_web_cpu_ms_per_request"}, then extra
keys: "kinds" (p50/p95 per request kind, two web processes) and "single_kinds".
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster import NGINX, Cluster, wait_until  # noqa: E402
from tests.wsclient import WebSocket  # noqa: E402

USERS = 20
SERVERS_PER_USER = 25

SETUP = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.cache import SessionStore as CacheStore
from django.contrib.sessions.backends.db import SessionStore
from allauth.account.models import EmailAddress
from accounts.models import Role, User
from accounts.services import do_create_token
from servers.models import Server
out = []
for i in range({users}):
    u = User.objects.create_user(f"load{{i}}@example.com", None, role=Role.RESELLER,
                                 company=f"Load {{i}}")
    EmailAddress.objects.create(user=u, email=u.email, verified=True, primary=True)
    _, raw = do_create_token(u, actor=u, data={{"name": "load", "scope": "write"}})
    servers = Server.objects.bulk_create(
        Server(name=f"load{{i}}-{{n}}", address="127.0.0.1", ssh_port=9, owner=u)
        for n in range({servers}))
    s = SessionStore()
    s[SESSION_KEY] = str(u.pk)
    s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    s[HASH_SESSION_KEY] = u.get_session_auth_hash()
    s.create()
    out.append({{"token": raw, "session": s.session_key,
                 "servers": [str(x.uuid) for x in Server.objects.filter(owner=u)]}})
print(json.dumps(out))
"""


KINDS = ["list_ops", "list_servers", "detail", "page", "create", "subscribe"]


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: list[tuple[str, float]] = []
        self.errors: list[str] = []

    def add(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.samples.append((kind, seconds))
            if error:
                self.errors.append(error)


def percentiles(latencies: list[float]) -> dict:
    lat = sorted(latencies)
    n = len(lat)
    return {
        "n": n,
        "p50_ms": round(statistics.median(lat) * 1000, 1) if n else None,
        "p95_ms": round(lat[max(0, int(n * 0.95) - 1)] * 1000, 1) if n else None,
    }


def client(cluster: Cluster, account: dict, stop_at: float, think: float, results: Results):
    rng = random.Random()
    session = cluster.session()
    session.headers["Authorization"] = f"Bearer {account['token']}"
    cookie = {"sessionid": account["session"]}
    tls = ssl.create_default_context(cafile=cluster.ca)
    url = cluster.url
    time.sleep(rng.uniform(0, think))  # spread the start
    while time.monotonic() < stop_at:  # bounded by the phase's end
        kind = rng.choices(KINDS, weights=[25, 20, 20, 15, 10, 10])[0]
        start = time.perf_counter()
        error = None
        try:
            if kind == "list_ops":
                r = session.get(f"{url}/api/v1/operations/?limit=20", timeout=30)
            elif kind == "list_servers":
                r = session.get(f"{url}/api/v1/servers/?limit=25", timeout=30)
            elif kind == "detail":
                server = rng.choice(account["servers"])
                r = session.get(f"{url}/api/v1/servers/{server}/", timeout=30)
            elif kind == "page":
                r = session.get(f"{url}/servers/", cookies=cookie, timeout=30,
                                headers={"Authorization": None})  # fmt: skip
            elif kind == "create":
                server = rng.choice(account["servers"])
                r = session.post(f"{url}/api/v1/servers/{server}/test-connection/", timeout=30)
            else:
                r = None
                ws = WebSocket(
                    cluster.ws_url("/ws/live/operations/?format=json&since=0"),
                    headers={"Origin": url, "Cookie": f"sessionid={account['session']}"},
                    tls=tls,
                    timeout=30,
                )
                try:
                    while ws.recv_json(30).get("type") != "ready":
                        pass
                finally:
                    ws.close()
            if r is not None and r.status_code >= 400:
                error = f"{kind}: HTTP {r.status_code}"
        except Exception as exc:  # noqa: BLE001 - counted, reported
            error = f"{kind}: {exc.__class__.__name__}: {exc}"[:200]
        results.add(kind, time.perf_counter() - start, error)
        time.sleep(rng.expovariate(1 / think))


def client_process(cluster, accounts, stop_at, think, queue) -> None:
    """One process of client threads (forked: it has the cluster's addresses and certificate);
    sends back its samples, errors and the CPU it used."""
    results = Results()
    threads = [
        threading.Thread(
            target=client, args=(cluster, account, stop_at, think, results), daemon=True
        )
        for account in accounts
    ]
    for t in threads:
        t.start()
    deadline = stop_at + 60  # one bound for all: a request still open then counts as failed
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = sum(t.is_alive() for t in threads)
    with results.lock:
        results.errors += ["hung: a request still open 60 s after the phase ended"] * hung
    cpu = sum(os.times()[:2])
    queue.put((results.samples, results.errors, cpu))


def run_phase(cluster, accounts, clients: int, seconds: float, think: float, ports, procs) -> dict:
    pids = [cluster.webs[p].pid for p in ports]
    cpu_before = cluster.cpu_seconds(pids)
    started = time.monotonic()
    stop_at = started + seconds
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    assigned = [accounts[i % len(accounts)] for i in range(clients)]
    workers = [
        ctx.Process(
            target=client_process,
            args=(cluster, assigned[n::procs], stop_at, think, queue),
            daemon=True,
        )
        for n in range(procs)
    ]
    for w in workers:
        w.start()
    samples, errors, client_cpu = [], [], 0.0
    for _ in workers:
        got_samples, got_errors, cpu = queue.get(timeout=seconds + 120)
        samples += got_samples
        errors += got_errors
        client_cpu += cpu
    for w in workers:
        w.join(10)
    elapsed = time.monotonic() - started
    cpu = cluster.cpu_seconds(pids) - cpu_before
    n = len(samples)
    overall = percentiles([s for _, s in samples])
    return {
        "requests": n,
        "rps": round(n / elapsed, 1),
        "p50_ms": overall["p50_ms"],
        "p95_ms": overall["p95_ms"],
        "errors": len(errors),
        "error_kinds": sorted(set(e.split(":")[0] + ":" + e.split(":")[1] for e in errors))[:5],
        "cpu_ms_per_request": round(cpu * 1000 / n, 2) if n else None,
        "client_cpu_ms_per_request": round(client_cpu * 1000 / n, 2) if n else None,
        "kinds": {k: percentiles([s for kind, s in samples if kind == k]) for k in KINDS},
    }


def reload_nginx(cluster: Cluster, ports: list[int]) -> None:
    """Point nginx's upstream at these web processes only."""
    site = cluster.nginx_prefix / "panel.conf"
    text = site.read_text()
    keep = [
        line
        for line in text.splitlines()
        if not line.strip().startswith("server 127.0.0.1:") or any(f":{p} " in line for p in ports)
    ]
    site.write_text("\n".join(keep) + "\n")
    p = cluster.nginx_prefix
    subprocess.run([NGINX, "-p", f"{p}/", "-c", "conf/nginx.conf", "-s", "reload"], check=True)
    time.sleep(1)  # the old workers finish; reload returns before the new ones serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think", type=float, default=3.0, help="mean seconds between requests")
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="uhp-load-"))
    base.chmod(0o755)
    static = ROOT / "var" / "bench" / "cluster-static"
    cluster = Cluster(base, webs=2, workers=2, static_dir=static)
    try:
        t = time.monotonic()
        cluster.start()
        accounts = cluster.shell(SETUP.format(users=USERS, servers=SERVERS_PER_USER))
        print(f"cluster up and seeded in {time.monotonic() - t:.1f} s", flush=True)
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
        both = run_phase(cluster, accounts, args.clients, args.seconds, args.think,
                         cluster.web_ports, args.procs)  # fmt: skip
        print(f"two web processes: {json.dumps(both)}", flush=True)
        one = cluster.web_ports[:1]
        reload_nginx(cluster, one)
        wait_until(lambda: cluster.ready(one[0]), 30, "web not ready")
        single = run_phase(
            cluster, accounts, args.clients, args.seconds, args.think, one, args.procs
        )
        print(f"one web process: {json.dumps(single)}", flush=True)
        print(f"load after: {os.getloadavg()}", flush=True)
        if both["errors"] or single["errors"]:
            for log in sorted(cluster.logs.glob("web-*.log")):
                lines = log.read_text(errors="replace").splitlines()
                errors = [line for line in lines if "Error" in line or "ERROR" in line]
                print(f"{log.name}: {len(errors)} error lines, last: {errors[-3:]}", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(
        json.dumps(
            {
                "clients": args.clients,
                "requests": both["requests"],
                "rps": both["rps"],
                "p50_ms": both["p50_ms"],
                "p95_ms": both["p95_ms"],
                "errors": both["errors"],
                "web_cpu_ms_per_request": both["cpu_ms_per_request"],
                "single_process_rps": single["rps"],
                "single_web_cpu_ms_per_request": single["cpu_ms_per_request"],
                "kinds": both["kinds"],
                "single_kinds": single["kinds"],
                "client_cpu_ms_per_request": both["client_cpu_ms_per_request"],
            }
        )
    )


if __name__ == "__main__":
    main()
