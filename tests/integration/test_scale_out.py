"""Scale-out, for real: two web processes (runweb) and two workers (qcluster, one task process
each) on PostgreSQL and Redis, behind a private nginx serving the shipped site over TLS
(tests/cluster.py). Started once for the module.

The operations run are "test connection" against the private sshd, through a gate this test
holds: while it is closed an operation stays running (on a worker found from /proc), so the
lock, a killed worker and a stopping worker can be watched mid-operation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.cluster import PASSWORD, Cluster, Unavailable, wait_until
from tests.conftest import require_real
from tests.integration.conftest import (
    SSH_HOST,
    free_port,
    start_sshd,
    stop_pidfile,
    wait_port,
    world_readable_tmp,
)
from tests.wsclient import Closed, WebSocket

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
RESELLER = "reseller@example.com"


class Gate:
    """The sshd operations reach, made holdable: while the gate file exists every command
    waits (a forced command in authorized_keys), so an operation stays running for as long
    as the test wants (up to its 20 s command timeout). Connections pass through a relay
    that notes each client port, so the worker behind one can be found in /proc."""

    def __init__(self, sshd, base: Path) -> None:
        self.file = base / "closed"
        keys = Path(sshd.base) / "authorized_keys"
        wait = f"while [ -e {self.file} ]; do sleep 0.05; done"
        forced = f'command="{wait}; exec bash -c \\"$SSH_ORIGINAL_COMMAND\\"",'
        keys.write_text(forced + keys.read_text())
        self.upstream = (sshd.host, sshd.port)
        self.peers: list[int] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self.file.touch()

    def release(self) -> None:
        self.file.unlink(missing_ok=True)

    def _accept(self) -> None:
        while True:
            try:
                client, peer = self.listener.accept()
            except OSError:
                return
            self.peers.append(peer[1])
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.release()
        self.listener.close()


def pid_with_local_port(port: int) -> int | None:
    """The process owning the loopback TCP socket bound to ``port`` (from /proc)."""
    # Every socket with that local port (another address may reuse the number), skipping
    # those no process holds any more (TIME_WAIT: inode 0).
    targets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                targets.add(f"socket:[{fields[9]}]")
    if not targets:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        return int(proc.name)
    return None


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


@pytest.fixture(scope="module")
def gate():
    """A private sshd of this module's own (its authorized_keys gets the forced command)."""
    base = world_readable_tmp("uhp-gate-")
    daemon = start_sshd(base, SSH_HOST, free_port(SSH_HOST))
    wait_port(SSH_HOST, daemon.port)
    g = Gate(daemon, base)
    g.sshd = daemon
    yield g
    g.close()
    stop_pidfile(base / "sshd.pid")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(gate):
    base = Path(tempfile.mkdtemp(prefix="uhp-cluster-"))
    base.chmod(0o755)
    # One task process per worker: an operation that blocks one worker leaves the next
    # task to the other worker, which is what the lock and fault tests watch.
    c = Cluster(
        base,
        webs=2,
        workers=2,
        static_dir=Path(settings.VAR_DIR) / "cluster-static",
        extra_env={"PANEL_WORKERS": "1"},
    )
    try:
        c.start()
    except Unavailable as exc:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)
        require_real(str(exc))
    try:
        c.data = c.shell(
            "import json\n"
            "from allauth.account.models import EmailAddress\n"
            "from accounts.models import Role, User\n"
            "from accounts.services import do_create_token\n"
            "from servers.models import Server\n"
            f"u = User.objects.create_user({RESELLER!r}, {PASSWORD!r}, role=Role.RESELLER,"
            " company='Resell')\n"
            "EmailAddress.objects.create(user=u, email=u.email, verified=True, primary=True)\n"
            "_, raw = do_create_token(u, actor=u, data={'name': 'ci', 'scope': 'write'})\n"
            f"s = Server.objects.create(name='gated', address='127.0.0.1', ssh_port={gate.port},"
            f" ssh_user='root', owner=u, private_key={gate.sshd.private_key!r},"
            f" public_key={gate.sshd.public_key!r})\n"
            "print(json.dumps({'token': raw, 'server': str(s.uuid)}))\n"
        )
        yield c
    finally:
        gate.release()
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def api(cluster) -> requests.Session:
    s = cluster.session()
    s.headers["Authorization"] = f"Bearer {cluster.data['token']}"
    return s


def signed_in(cluster) -> requests.Session:
    """A browser-like session through nginx (the login form, CSRF and all)."""
    s = cluster.session()
    s.get(f"{cluster.url}/accounts/login/")
    resp = s.post(
        f"{cluster.url}/accounts/login/",
        data={
            "login": RESELLER,
            "password": PASSWORD,
            "csrfmiddlewaretoken": s.cookies["csrftoken"],
        },
        headers={"Referer": f"{cluster.url}/accounts/login/"},
    )
    assert resp.status_code == 200 and "sessionid" in s.cookies, resp.text[-500:]
    return s


def subscribe(cluster, session: requests.Session, port: int | None = None) -> WebSocket:
    """The operations list's live socket (JSON events), straight to one web process or
    through nginx."""
    origin = cluster.url if port is None else f"http://127.0.0.1:{port}"
    ws = WebSocket(
        cluster.ws_url("/ws/live/operations/?format=json&since=0", port=port),
        headers={"Origin": origin, "Cookie": f"sessionid={session.cookies['sessionid']}"},
        tls=ssl.create_default_context(cafile=cluster.ca),
    )
    while ws.recv_json(10).get("type") != "ready":
        pass
    return ws


def start_op(cluster, api) -> str:
    resp = api.post(f"{cluster.url}/api/v1/servers/{cluster.data['server']}/test-connection/")
    assert resp.status_code == 202, resp.text
    return resp.json()["uuid"]


def op(cluster, api, uuid: str) -> dict:
    resp = api.get(f"{cluster.url}/api/v1/operations/{uuid}/")
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_state(cluster, api, uuid: str, *states: str, seconds: float = 40) -> dict:
    return wait_until(
        lambda: (found := op(cluster, api, uuid))["state"] in states and found,
        seconds,
        f"operation {uuid} never reached {states}",
        step=0.2,
    )


def holder_worker(cluster, gate, before: int) -> int:
    """The worker (its number in the cluster) whose task process holds the gate's newest
    connection."""
    wait_until(lambda: len(gate.peers) > before, 30, "no connection reached the gate")
    pid = wait_until(lambda: pid_with_local_port(gate.peers[-1]), 30, "no process for it")
    sid = session_of(pid)
    return next(n for n, proc in cluster.workers.items() if proc.pid == sid)


def events_for(ws: WebSocket, key: str, until_state: str | None = None) -> list[dict]:
    """Events about one operation, until the socket goes quiet or the state shows up."""
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            event = ws.recv_json(5)
        except TimeoutError:
            break
        if event.get("key") == key.replace("-", ""):
            seen.append(event)
            if until_state and event.get("data", {}).get("state") == until_state:
                break
    return seen


def test_both_web_processes_serve_the_api_and_the_portal(cluster, api):
    plain = cluster.session()
    for port in cluster.web_ports:
        resp = plain.get(
            f"http://127.0.0.1:{port}/api/v1/servers/",
            headers={
                "Authorization": f"Bearer {cluster.data['token']}",
                "Host": "127.0.0.1",
                "X-Forwarded-Proto": "https",
            },
        )
        assert resp.status_code == 200 and resp.json()["count"] == 1
    page = signed_in(cluster).get(f"{cluster.url}/operations/")
    assert page.status_code == 200 and "data-live=" in page.text
    static = plain.get(f"{cluster.url}/static/js/live.js")
    assert static.status_code == 200 and "WebSocket" in static.text
    assert plain.get(f"{cluster.url}/healthz/ready").json()["status"] == "ok"


def test_sockets_on_both_web_processes_see_the_same_events(cluster, api):
    session = signed_in(cluster)
    sockets = [subscribe(cluster, session, port) for port in cluster.web_ports]
    sockets.append(subscribe(cluster, session))  # and one through nginx
    try:
        uuid = start_op(cluster, api)
        wait_state(cluster, api, uuid, "succeeded")
        streams = [events_for(ws, uuid, "succeeded") for ws in sockets]
    finally:
        for ws in sockets:
            ws.close()
    seqs = [[e["seq"] for e in stream] for stream in streams]
    assert seqs[0] and seqs[0] == seqs[1] == seqs[2], seqs
    assert streams[0][-1]["data"]["state"] == "succeeded"


def test_an_operation_holds_its_server_against_the_other_worker(cluster, api, gate):
    gate.hold()
    try:
        first = start_op(cluster, api)
        holder_worker(cluster, gate, len(gate.peers))
        wait_state(cluster, api, first, "running")
        connections = len(gate.peers)
        # Three more on the same server. The holder's cluster can take at most two of them
        # off the queue (one in its task queue, one in its pusher's hand: its only task
        # process is busy), so the other worker gets at least one: it waits for the server's
        # lock, says so, stays queued and never connects.
        others = [start_op(cluster, api) for _ in range(3)]

        def waiting() -> bool:
            return any(
                "Waiting for" in api.get(f"{cluster.url}/api/v1/operations/{uuid}/log/").text
                for uuid in others
            )

        wait_until(waiting, 20, "no operation waits for the server's lock", step=0.2)
        assert op(cluster, api, first)["state"] == "running"
        assert all(op(cluster, api, uuid)["state"] == "queued" for uuid in others)
        assert len(gate.peers) == connections
    finally:
        gate.release()
    for uuid in [first, *others]:
        assert wait_state(cluster, api, uuid, "succeeded", "failed")["state"] == "succeeded"


def test_a_killed_worker_mid_operation_is_failed_cleanly_by_the_other(cluster, api, gate):
    gate.hold()
    try:
        doomed = start_op(cluster, api)
        holder = holder_worker(cluster, gate, len(gate.peers))
        wait_state(cluster, api, doomed, "running")
        os.killpg(cluster.workers[holder].pid, signal.SIGKILL)
        cluster.workers[holder].wait(10)
    finally:
        gate.release()
    # The next operation on the server meets the dead one's lock: once its heartbeat is
    # stale the survivor fails it, frees the lock and goes on.
    after = start_op(cluster, api)
    assert wait_state(cluster, api, after, "succeeded", "failed")["state"] == "succeeded"
    dead = op(cluster, api, doomed)
    assert dead["state"] == "failed" and "worker" in dead["error"].lower()
    cluster.start_worker(holder)
    wait_until(lambda: cluster.worker_running(holder), 60, "worker did not come back")


def worker_name(cluster, n: int) -> str:
    """The name worker ``n`` claims operations with (its row in core_worker)."""
    pid = cluster.workers[n].pid
    return wait_until(
        lambda: (
            (rows := cluster.sql("SELECT name FROM core_worker WHERE pid = %s", (pid,)))
            and rows[0][0]
        ),
        30,
        f"worker {n} never registered",
    )


def claims(cluster, name: str, uuids: list[str]) -> list[str]:
    """Which of these operations the worker holds, queued (taken off the queue, not started)."""
    rows = cluster.sql(
        "SELECT uuid::text FROM core_operation WHERE worker = %s AND state = 'queued'", (name,)
    )
    return [uuid for (uuid,) in rows if uuid in uuids]


def test_a_killed_worker_loses_none_of_the_tasks_it_had_taken(cluster, api, gate):
    """SIGKILL to a worker whose cluster holds operations it took off the queue but could not
    start yet (its only task process is busy): they are requeued and finish on the other
    worker within seconds; its running one is failed. Nothing stays queued."""
    gate.hold()
    try:
        first = start_op(cluster, api)
        holder = holder_worker(cluster, gate, len(gate.peers))
        wait_state(cluster, api, first, "running")
        name = worker_name(cluster, holder)
        others: list[str] = []
        for _ in range(8):  # the other worker may take some: until the holder took one
            others.append(start_op(cluster, api))
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: claims(cluster, name, others), 1.5, "", step=0.1)
                break
        taken = claims(cluster, name, others)
        assert taken, "the busy worker took nothing off the queue"
        os.killpg(cluster.workers[holder].pid, signal.SIGKILL)
        cluster.workers[holder].wait(10)
    finally:
        gate.release()
    started = time.monotonic()
    for uuid in others:
        assert wait_state(cluster, api, uuid, "succeeded", "failed", seconds=60)["state"] == (
            "succeeded"
        ), uuid
    assert time.monotonic() - started < 45
    dead = op(cluster, api, first)
    assert dead["state"] == "failed" and "worker" in dead["error"].lower()
    for uuid in taken:
        log = api.get(f"{cluster.url}/api/v1/operations/{uuid}/log/").text
        assert "queued again" in log, log
    assert cluster.sql("SELECT count(*) FROM core_operation WHERE state = 'queued'") == [(0,)]
    cluster.start_worker(holder)
    wait_until(lambda: cluster.worker_running(holder), 60, "worker did not come back")


def test_a_stopping_worker_finishes_its_operation_first(cluster, api, gate):
    """SIGTERM to the cluster process alone (systemd's KillMode=mixed, compose's init):
    it stops taking tasks but its task process finishes the operation it holds."""
    gate.hold()
    try:
        running = start_op(cluster, api)
        holder = holder_worker(cluster, gate, len(gate.peers))
        wait_state(cluster, api, running, "running")
        proc = cluster.workers[holder]
        os.kill(proc.pid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1.5)  # still there: it waits for its task
    finally:
        gate.release()
    assert wait_state(cluster, api, running, "succeeded", "failed")["state"] == "succeeded"
    assert proc.wait(60) == 0
    cluster.start_worker(holder)
    wait_until(lambda: cluster.worker_running(holder), 60, "worker did not come back")


def test_a_draining_web_process_sends_its_sockets_elsewhere(cluster, api):
    """SIGTERM to one web process: its websockets get 4503 (restarting) at once, it
    stops, nginx sends the reconnect to the other one, which replays what was missed."""
    session = signed_in(cluster)
    port = cluster.web_ports[0]
    direct = subscribe(cluster, session, port)
    os.kill(cluster.webs[port].pid, signal.SIGTERM)
    with pytest.raises(Closed) as closed:
        while True:
            direct.recv(10)
    assert closed.value.code == 4503
    assert cluster.webs[port].wait(30) == 0
    uuid = start_op(cluster, api)  # while one web process is gone
    wait_state(cluster, api, uuid, "succeeded")
    again = subscribe(cluster, session)  # the page's reconnect, through nginx
    again.close()
    cluster.start_web(port)
    wait_until(lambda: cluster.ready(port), 60, "web process did not come back")


def test_browser_keeps_its_live_page_while_web_processes_die(cluster, api, gate):
    if not Path(CHROMIUM).exists():
        require_real(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    from tests.e2e.browser import ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.goto(f"{cluster.url}/accounts/login/")
            page.fill("input[name=login]", RESELLER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{cluster.url}/")
            page.goto(f"{cluster.url}/operations/")
            page.wait_for_selector("[data-live-state=ready]")
            page.evaluate(
                "() => { window.liveStates = []; const el = document.querySelector("
                "'[data-live]'); new MutationObserver(() => window.liveStates.push("
                "el.dataset.liveState)).observe(el, {attributes: true}); }"
            )
            # Each web process in turn is killed outright while the page is open; an
            # operation starts and ends while it is gone. Whichever held the page's socket,
            # the page reconnects to the other and shows every change.
            for port in list(cluster.web_ports):
                os.killpg(cluster.webs[port].pid, signal.SIGKILL)
                cluster.webs[port].wait(10)
                uuid = start_op(cluster, api).replace("-", "")
                page.wait_for_selector(f"#op-{uuid}-progress[data-state=succeeded]", timeout=40_000)
                cluster.start_web(port)
                wait_until(lambda port=port: cluster.ready(port), 60, "web did not come back")
            states = page.evaluate("() => window.liveStates")
            assert "closed" in states and states[-1] == "ready", states
        finally:
            browser.close()


def test_rolling_upgrade_keeps_answering_and_loses_no_operation(cluster, api):
    """manage.py upgrade --pid-dir restarts the web processes one by one, then the workers
    (a process manager brings each back: here a thread of this test) while a client keeps
    asking through nginx: no request fails. An operation runs across its worker's restart
    and finishes; those queued behind it finish too; a worker is stopped only once the one
    before it runs again."""
    restarted: list[str] = []
    died: list[tuple[str, float]] = []
    back: list[tuple[str, float]] = []
    stop = threading.Event()

    def manager():
        while not stop.is_set():
            for port, proc in list(cluster.webs.items()):
                if proc.poll() is not None:
                    cluster.start_web(port)
                    restarted.append(f"web-{port}")
            for n, proc in list(cluster.workers.items()):
                if proc.poll() is not None:
                    died.append((f"worker-{n}", time.monotonic()))
                    cluster.start_worker(n)
                    restarted.append(f"worker-{n}")
            for n in cluster.workers:
                key = f"worker-{n}"
                if cluster.worker_running(n) and key in dict(died) and key not in dict(back):
                    back.append((key, time.monotonic()))
            stop.wait(0.05)

    answers: list[int] = []

    def client():
        while not stop.is_set():
            try:
                answers.append(api.get(f"{cluster.url}/api/v1/servers/", timeout=30).status_code)
            except requests.RequestException:
                answers.append(0)

    out: list[str] = []

    def upgrade():
        out.append(cluster.manage("upgrade", "--skip-migrate", "--pid-dir", str(cluster.var)))

    # Three operations on one lock, held by a file (no command timeout to race): one runs,
    # two wait for it (queued, taken by a worker or not).
    hold = cluster.base / "hold"
    hold.touch()
    uuids = cluster.shell(
        "import json\n"
        "from accounts.models import User\n"
        "from core.operations import start_operation\n"
        f"u = User.objects.get(email={RESELLER!r})\n"
        "ops = [start_operation(kind='t', task='tests.support.hold_file', owner=u,"
        f" lock_key='upgrade-test', args={{'path': {str(hold)!r}, 'seconds': 900}})"
        " for _ in range(3)]\n"
        "print(json.dumps([str(o.uuid) for o in ops]))\n"
    )

    def holder_pid():
        rows = cluster.sql(
            "SELECT o.uuid::text, w.pid FROM core_operation o JOIN core_worker w"
            " ON w.name = o.worker WHERE o.state = 'running' AND o.lock_key = 'upgrade-test'"
        )
        return rows and rows[0]

    across, pid = wait_until(holder_pid, 30, "no operation runs")
    holder = next(n for n, proc in cluster.workers.items() if proc.pid == pid)
    threads = [threading.Thread(target=f) for f in (manager, client)]
    for t in threads:
        t.start()
    runner = threading.Thread(target=upgrade)
    try:
        before = {
            **{f"web-{port}": proc.pid for port, proc in cluster.webs.items()},
            **{f"worker-{n}": proc.pid for n, proc in cluster.workers.items()},
        }
        runner.start()
        wait_until(
            lambda: (
                cluster.sql("SELECT stopping FROM core_worker WHERE pid = %s", (pid,)) == [(True,)]
            ),
            600,  # two web processes and maybe the other worker first, on a busy machine
            "the holder was never told to stop",
        )
        time.sleep(1)  # were it to stop without waiting for its operation, it would now
        assert cluster.sql("SELECT state FROM core_operation WHERE uuid = %s", (across,)) == [
            ("running",)
        ]
        assert cluster.workers[holder].pid == pid and cluster.workers[holder].poll() is None
    finally:
        hold.unlink(missing_ok=True)
        runner.join(600)
        stop.set()
        for t in threads:
            t.join(60)
    assert out and "Restarted 2 web processes and 2 workers" in out[0], out
    assert sorted(restarted) == sorted(before), restarted
    current = {
        **{f"web-{port}": proc.pid for port, proc in cluster.webs.items()},
        **{f"worker-{n}": proc.pid for n, proc in cluster.workers.items()},
    }
    assert all(current[key] != pid for key, pid in before.items())
    # Rolling: the second worker stopped only after the first ran again.
    (first, _), (second, second_died) = sorted(died, key=lambda d: d[1])
    assert dict(back)[first] < second_died, (died, back)
    for uuid in uuids:
        assert wait_state(cluster, api, uuid, "succeeded", "failed")["state"] == "succeeded"
    assert cluster.sql("SELECT count(*) FROM core_operation WHERE state = 'queued'") == [(0,)]
    assert answers and set(answers) == {200}, answers
