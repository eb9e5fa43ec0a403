"""Node.js and Python app sites over the SSH transport, against a private sshd, nginx and
supervisord on loopback: apps start as the account's user and answer through nginx by their
Host header (websockets too), restart, take new environment variables, stop and start, are
killed and restarted past their plan's memory, a crashing app fails alone, suspension and
deletion remove the program and its process, and bad input is refused."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from core.models import AuditEntry, Operation
from tests.conftest import login, make_user
from tests.integration.conftest import (
    need,
    stop_pidfile,
)
from tests.integration.faults import die, run_in_doomed_worker
from tests.integration.web_stack import WebStack, drop_user
from websites import plans, services
from websites.models import Website
from websites.tasks import refresh_app_states

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
HOST = "127.0.0.6"
EMAIL = "uhpapps@example.com"  # account name "uhpapps": a real Linux user while the tests run
NAME = "uhpapps"
OTHER = "uhpapps2"  # the fault test's customer

NODE_APP = r"""
const http = require('http');
const server = http.createServer((req, res) => {
  res.end(`node ${process.pid} ${process.env.GREETING || '-'} ${req.headers.host} ` +
          `${require('os').userInfo().username}`);
});
server.on('upgrade', (req, socket) => {
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n' +
               'Connection: Upgrade\r\n\r\n');
  socket.on('data', (data) => socket.write(data));
});
server.listen(Number(process.env.PORT), process.env.HOST);
"""

PYTHON_APP = """
import os
from wsgiref.simple_server import make_server

hog = []


def app(environ, start_response):
    if environ["PATH_INFO"] == "/hog":
        hog.append(b"x" * (300 * 1024 * 1024))  # written, so resident
    body = f"python {os.getpid()} {environ['HTTP_HOST']}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


make_server(os.environ["HOST"], int(os.environ["PORT"]), app).serve_forever()
"""


def _supervisord(base: Path) -> Path:
    """A private supervisord: its own config, socket, log and pid file."""
    conf = base / "supervisord.conf"
    (base / "supervisor.d").mkdir()
    conf.write_text(
        f"[unix_http_server]\nfile={base}/supervisor.sock\nchmod=0700\n"
        f"[supervisord]\nlogfile={base}/supervisord.log\npidfile={base}/supervisord.pid\n"
        f"childlogdir={base}\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{base}/supervisor.sock\n"
        f"[include]\nfiles = {base}/supervisor.d/*.conf\n"
    )
    subprocess.run([need("supervisord"), "-c", str(conf)], check=True)
    end = time.monotonic() + 10
    while not (base / "supervisor.sock").exists():
        assert time.monotonic() < end, "supervisord did not start"
        time.sleep(0.05)
    return conf


def _app_port_block(size: int = 21) -> int:
    """The first of ``size`` ports the apps may take: below the kernel's ephemeral range
    (32768 and up, where other tests' connections take ports at any moment) and free now."""
    import random
    import socket

    for _attempt in range(100):
        first = random.randrange(20000, 32000 - size)
        try:
            for port in range(first, first + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no free block of app ports")


@pytest.fixture(scope="module")
def stack():
    need("node")
    need("supervisorctl")
    drop_user(OTHER)
    web = WebStack(HOST, NAME)
    base = web.base
    supervisor_conf = _supervisord(base)
    first_port = _app_port_block()
    web.profile.update(
        {
            "supervisor_conf": str(supervisor_conf),
            "supervisor_dir": str(base / "supervisor.d"),
            "app_env_dir": str(base / "app-env"),
            "app_runner": str(base / "lib" / "app-run"),
            "app_ports": f"{first_port}-{first_port + 20}",
            "app_start_timeout": 15,
        }
    )
    yield web
    subprocess.run(
        ["supervisorctl", "-c", str(supervisor_conf), "shutdown"], capture_output=True, check=False
    )
    stop_pidfile(base / "supervisord.pid")
    drop_user(OTHER)
    web.stop()


@pytest.fixture
def server(stack, admin_user):
    return stack.server(
        admin_user,
        "web-apps",
        facts={"php_versions": [], "services": {"nginx": True, "supervisord": True}},
    )


@pytest.fixture
def run_ops(q_sync, django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _ctl(stack, *args: str) -> str:
    conf = stack.profile["supervisor_conf"]
    res = subprocess.run(["supervisorctl", "-c", conf, *args], capture_output=True, text=True)
    return res.stdout + res.stderr


def _wait_for(check, timeout: float = 20.0, what: str = "the condition"):
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _upgrade(port: int, host: str) -> bytes:
    """A websocket handshake through nginx; the node app echoes after switching."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        s.sendall(b"ping-through-nginx")
        echo = b""
        while b"ping-through-nginx" not in echo:
            echo += s.recv(4096)
        return head.split(b"\r\n", 1)[0] + b" " + echo


def _app_dir(stack, domain: str) -> Path:
    return stack.homes / NAME / "sites" / domain / "app"


def test_node_and_python_apps(stack, server, admin_user, run_ops):
    nginx = stack.nginx
    customer = make_user(EMAIL, "customer")
    assert customer.account_name == NAME
    plan = plans.do_create_plan(
        actor=admin_user,
        data={"name": "Apps", "websites": 5, "kinds": "node python static", "app_memory_mb": 96},
    )
    plans.do_subscribe(customer, plan, actor=admin_user)
    api = login(customer)
    # The node app's code is there before the site: it answers as soon as it is created.
    node_dir = _app_dir(stack, "node.apps.test")
    node_dir.mkdir(parents=True)
    (node_dir / "server.js").write_text(NODE_APP)
    for p in (stack.homes / NAME, stack.homes / NAME / "sites", node_dir.parent, node_dir):
        p.chmod(0o755)

    with run_ops():
        resp = api.post(
            "/api/v1/websites/",
            {
                "domain": "node.apps.test",
                "server": str(server.uuid),
                "kind": "node",
                "start_command": "/usr/bin/node server.js",
                "app_env": {"GREETING": "hello"},
            },
            content_type="application/json",
        )
    assert resp.status_code == 201, resp.content
    node = Website.objects.get(domain="node.apps.test")
    assert node.status == "active", node.status_message
    assert node.app_state == "running"
    low, high = map(int, stack.profile["app_ports"].split("-"))
    assert low <= node.app_port <= high
    status, body = nginx.get("node.apps.test")
    assert (
        status == 200
        and body.startswith("node ")
        and body.endswith(f" hello node.apps.test {NAME}")
    ), body
    first_pid = body.split()[1]
    # The secret is not readable back, nor in the audit.
    data = api.get(f"/api/v1/websites/{node.uuid}/").json()
    assert data["app_env"] == {"GREETING": "********"} and data["app_port"] == node.app_port
    assert "hello" not in str(list(AuditEntry.objects.values_list("changes", flat=True)))
    env_file = Path(stack.profile["app_env_dir"]) / f"{node.program_name}.json"
    assert oct(env_file.stat().st_mode & 0o777) == "0o400"
    assert env_file.stat().st_uid == int(subprocess.check_output(["id", "-u", NAME]))
    # Websockets pass through nginx.
    assert _upgrade(nginx.port, "node.apps.test").startswith(
        b"HTTP/1.1 101 Switching Protocols ping-through-nginx"
    )

    # A Python app created before its code: it crashes, the site fails with the app's words,
    # and every other site keeps answering.
    with run_ops():
        resp = api.post(
            "/api/v1/websites/",
            {
                "domain": "py.apps.test",
                "server": str(server.uuid),
                "kind": "python",
                "start_command": "/usr/bin/python3 app.py",
            },
            content_type="application/json",
        )
    assert resp.status_code == 201, resp.content
    py = Website.objects.get(domain="py.apps.test")
    assert py.status == "failed" and "crashed" in py.status_message, py.status_message
    assert "app.py" in py.status_message  # python's own words from the app's log
    assert py.app_state == "not installed"  # its program was taken back
    assert nginx.get("node.apps.test")[0] == 200
    assert py.app_port != node.app_port

    # The code arrives; start runs it.
    (_app_dir(stack, "py.apps.test") / "app.py").write_text(PYTHON_APP)
    with run_ops():
        resp = api.post(f"/api/v1/websites/{py.uuid}/start/")
    assert resp.status_code == 202, resp.content
    py.refresh_from_db()
    assert py.status == "active", py.status_message
    assert py.app_state == "running"
    status, body = nginx.get("py.apps.test")
    assert status == 200 and body.startswith("python ") and body.endswith(" py.apps.test"), body

    # Restart: a new process.
    with run_ops():
        assert api.post(f"/api/v1/websites/{node.uuid}/restart/").status_code == 202
    body = nginx.get("node.apps.test")[1]
    assert body.split()[1] != first_pid, body

    # A new variable: applied, and the app restarted with it.
    with run_ops():
        resp = api.patch(
            f"/api/v1/websites/{node.uuid}/",
            {"app_env": {"GREETING": "********", "EXTRA": "x"}},
            content_type="application/json",
        )
    assert resp.status_code == 200, resp.content
    assert resp.json()["app_env"] == {"EXTRA": "********", "GREETING": "********"}
    node.refresh_from_db()
    assert node.env_vars() == {"EXTRA": "x", "GREETING": "hello"}
    with run_ops():
        api.patch(
            f"/api/v1/websites/{node.uuid}/",
            {"app_env": {"GREETING": "hej", "EXTRA": None}},
            content_type="application/json",
        )
    nginx.wait_for_status("node.apps.test", 200)
    assert " hej node.apps.test" in nginx.get("node.apps.test")[1]

    # Stop: nginx answers 502 for this site alone; start brings it back.
    with run_ops():
        assert api.post(f"/api/v1/websites/{node.uuid}/stop/").status_code == 202
    node.refresh_from_db()
    assert node.app_state == "stopped" and not node.app_running
    assert "STOPPED" in _ctl(stack, "status", node.program_name)
    assert nginx.get("node.apps.test")[0] == 502
    assert nginx.get("py.apps.test")[0] == 200
    with run_ops():
        api.post(f"/api/v1/websites/{node.uuid}/start/")
    node.refresh_from_db()
    assert node.app_state == "running" and node.app_running
    assert nginx.get("node.apps.test")[0] == 200
    # Stopped behind the panel's back: the scheduled read tells, then start repairs it.
    _ctl(stack, "stop", node.program_name)
    assert refresh_app_states() == 2
    node.refresh_from_db()
    assert node.app_state == "stopped" and node.app_running
    with run_ops():
        api.post(f"/api/v1/websites/{node.uuid}/start/")
    node.refresh_from_db()
    assert node.app_state == "running"

    # Past its memory (the plan's 96 MB) the app is killed and supervisord restarts it.
    before = nginx.get("py.apps.test")[1].split()[1]
    # The answer may come before the watchdog's next look (200) or not (502): either way
    # the process holding 300 MB is killed within half a second and started again.
    nginx.get("py.apps.test", "/hog")

    def restarted():
        status, body = nginx.get("py.apps.test")
        return status == 200 and body.split()[1] != before

    _wait_for(restarted, what="the app to come back after its memory kill")
    log = stack.homes / NAME / "logs" / "py.apps.test.app.log"
    assert "more than its limit of 96 MB" in log.read_text()

    # Suspension stops the program; unsuspending runs it again.
    admin = login(admin_user)
    with run_ops():
        admin.post(f"/api/v1/websites/{node.uuid}/suspend/", {"reason": "x"})
    assert "no such process" in _ctl(stack, "status", node.program_name)
    assert nginx.get("node.apps.test")[0] == 503
    with run_ops():
        admin.post(f"/api/v1/websites/{node.uuid}/unsuspend/")
    node.refresh_from_db()
    assert node.status == "active", node.status_message
    assert nginx.get("node.apps.test")[0] == 200

    # An app that crashes after it ran: the restart fails and says so, the state read from
    # supervisord is "crashed", and the other site keeps answering.
    app_py = _app_dir(stack, "py.apps.test") / "app.py"
    app_py.write_text("raise SystemExit('broken on purpose')\n")
    with run_ops():
        assert api.post(f"/api/v1/websites/{py.uuid}/restart/").status_code == 202
    op = Operation.objects.filter(kind="website.app_restart", target_id=str(py.uuid)).latest(
        "created_at"
    )
    words = op.error + op.error_detail
    assert op.state == "failed" and "crashed" in words, words
    # Its own words are in its log (supervisord writes them there as they come).
    app_log = stack.homes / NAME / "logs" / "py.apps.test.app.log"
    _wait_for(lambda: "broken on purpose" in app_log.read_text(), what="the app's words")
    py.refresh_from_db()
    assert py.app_state == "crashed"
    # supervisord gives up after its retries: the program ends FATAL.
    _wait_for(lambda: "FATAL" in _ctl(stack, "status", py.program_name), timeout=60, what="FATAL")
    assert nginx.get("node.apps.test")[0] == 200

    # Deletion: the program file, the process and the port go.
    program = Path(stack.profile["supervisor_dir"]) / f"{py.program_name}.conf"
    assert program.exists()

    with run_ops():
        assert api.delete(f"/api/v1/websites/{py.uuid}/").status_code == 202
    assert not Website.objects.filter(pk=py.pk).exists()
    assert not program.exists()
    assert "no such process" in _ctl(stack, "status", py.program_name)
    assert subprocess.run(["pgrep", "-u", NAME, "-f", "app.py"]).returncode == 1  # none left
    assert nginx.get("node.apps.test")[0] == 200
    with run_ops():
        api.delete(f"/api/v1/websites/{node.uuid}/")
    assert not list(Path(stack.profile["supervisor_dir"]).glob("*.conf"))
    assert not Path(stack.profile["app_runner"]).exists()


@pytest.mark.parametrize(
    "data,field",
    [
        ({"start_command": "node server.js; rm -rf /"}, "start_command"),
        ({"start_command": "node $(id)"}, "start_command"),
        ({"start_command": ""}, "start_command"),
        ({"app_env": {"a-b": "1"}}, "app_env"),
        ({"app_env": {"TOKEN": "line\nbreak"}}, "app_env"),
        ({"app_env": {"PORT": "80"}}, "app_env"),
        ({"kind": "static", "start_command": "node x.js"}, "start_command"),
    ],
)
def test_bad_app_input_is_refused(server, admin_user, data, field):
    customer = make_user("badapp@example.com", "customer")
    plan = plans.do_create_plan(actor=admin_user, data={"name": "Bad", "websites": 3})
    plans.do_subscribe(customer, plan, actor=admin_user)
    api = login(customer)
    body = {
        "server": str(server.uuid),
        "domain": "bad.apps.test",
        "kind": "node",
        "start_command": "node server.js",
        **data,
    }
    resp = api.post("/api/v1/websites/", body, content_type="application/json")
    assert resp.status_code == 400, resp.content
    assert field in resp.json(), resp.json()
    assert not Website.objects.exists()


def test_plan_kinds_limit_apps(server, admin_user):
    customer = make_user("phponly@example.com", "customer")
    plan = plans.do_create_plan(actor=admin_user, data={"name": "PHP", "kinds": "php static"})
    plans.do_subscribe(customer, plan, actor=admin_user)
    resp = login(customer).post(
        "/api/v1/websites/",
        {
            "server": str(server.uuid),
            "domain": "n.apps.test",
            "kind": "node",
            "start_command": "node s.js",
        },
        content_type="application/json",
    )
    assert resp.status_code == 400 and "does not allow node sites" in resp.content.decode()
    assert re.search("kind", str(resp.json()))


def test_supervisord_down_fails_the_app_alone_and_a_retry_converges(
    stack, server, admin_user, run_ops
):
    """Fault: the process manager does not answer. The app's site fails with its words (its
    files taken back), the catch-all and nginx go on; once supervisord is back, a retry
    brings the app up."""
    nginx = stack.nginx
    customer = make_user(f"{OTHER}@example.com", "customer")
    conf = stack.profile["supervisor_conf"]
    subprocess.run(["supervisorctl", "-c", conf, "shutdown"], capture_output=True, check=False)
    pid_file = stack.base / "supervisord.pid"
    _wait_for(lambda: not pid_file.exists(), what="supervisord to stop")
    try:
        with run_ops():
            site = services.do_create_website(
                actor=admin_user,
                data={
                    "domain": "down.apps.test",
                    "server": server,
                    "owner": customer,
                    "kind": "python",
                    "start_command": "/usr/bin/python3 app.py",
                },
            )
        site.refresh_from_db()
        assert site.status == "failed" and "supervisor" in site.status_message, site.status_message
        program = Path(stack.profile["supervisor_dir"]) / f"{site.program_name}.conf"
        assert not program.exists()  # taken back: nothing half-applied
        assert nginx.get("down.apps.test")[0] == 404  # the catch-all, nginx still serves
    finally:
        _supervisord_again(stack)
    app_dir = stack.homes / OTHER / "sites" / "down.apps.test" / "app"
    (app_dir / "app.py").write_text(PYTHON_APP)
    with run_ops():
        services.do_retry_website(site, actor=admin_user)
    site.refresh_from_db()
    assert site.status == "active", site.status_message
    assert site.app_state == "running"
    assert nginx.get("down.apps.test")[0] == 200
    with run_ops():
        services.do_delete_website(site, actor=admin_user)
    assert "no such process" in _ctl(stack, "status", site.program_name)


def _supervisord_again(stack) -> None:
    conf = stack.profile["supervisor_conf"]
    subprocess.run([need("supervisord"), "-c", conf], check=True)
    _wait_for(
        lambda: "RUNNING" in _ctl(stack, "pid") or _ctl(stack, "pid").strip().isdigit(),
        what="supervisord",
    )


def _arm_after_the_command() -> None:
    """In the worker: die once the process manager ran the restart, before its check."""
    from websites import tasks

    tasks.profile_for = lambda server: die()


def _arm_mid_apply() -> None:
    """In the worker: die once the program file is swapped in, before the reload."""
    from servers import tasks as server_tasks
    from servers.engine.engine import Engine

    class Doomed(Engine):
        def __init__(self, *args, **kwargs):
            hook = lambda phase: die() if phase == "reload" else None  # noqa: E731
            super().__init__(*args, **{**kwargs, "hook": hook, "batch": False})

    server_tasks.Engine = Doomed


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("action", "arm"),
    [("restart", _arm_after_the_command), ("start", _arm_mid_apply)],
    ids=["restart-after-the-command", "start-mid-apply"],
)
def test_worker_killed_during_an_app_action(
    stack, server, admin_user, q_sync, monkeypatch, django_capture_on_commit_callbacks, action, arm
):
    """A real SIGKILL of the worker running an app action: once the dead operation is
    noticed, the operation is failed, the site says failed and why (never pending), the
    app's state reads unknown; starting it again converges and the app answers."""
    nginx = stack.nginx
    customer = make_user(f"{OTHER}@example.com", "customer")
    domain = f"{action}.killed.apps.test"
    run = lambda: django_capture_on_commit_callbacks(execute=True)  # noqa: E731
    with run():
        site = services.do_create_website(
            actor=admin_user,
            data={
                "domain": domain,
                "server": server,
                "owner": customer,
                "kind": "python",
                "start_command": "/usr/bin/python3 app.py",
            },
        )
    (stack.homes / OTHER / "sites" / domain / "app" / "app.py").write_text(PYTHON_APP)
    with run():  # created before its code: the retry starts it
        services.do_retry_website(site, actor=admin_user)
    site.refresh_from_db()
    assert site.status == "active", site.status_message
    if action == "start":
        with run():
            services.do_app_action(site, actor=admin_user, action="stop")
        _wait_for(lambda: nginx.get(domain)[0] == 502, what="the app to stop")

    queued: list[Operation] = []
    with monkeypatch.context() as m:  # queued, not run: the doomed child runs it
        m.setattr("core.operations._enqueue", queued.append)
        with run():
            services.do_app_action(site, actor=admin_user, action=action)
    (op,) = queued
    run_in_doomed_worker(op, arm)
    assert op.state == Operation.State.FAILED, op.state
    site.refresh_from_db()
    assert site.status == "failed", site.status
    assert f"The app's {action} was interrupted" in site.status_message
    assert site.app_state == "unknown"

    # Started again (as the message says): the site applies, the app runs and answers.
    with run():
        op = services.do_app_action(site, actor=admin_user, action="start")
    op.refresh_from_db()
    assert op.state == Operation.State.SUCCEEDED, op.error
    site.refresh_from_db()
    assert site.status == "active", site.status_message
    assert site.app_state == "running" and site.app_running
    _wait_for(lambda: nginx.get(domain)[0] == 200, what="the app to answer")
    with run():
        services.do_delete_website(site, actor=admin_user)
