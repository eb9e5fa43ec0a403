"""Faults in every phase of an apply, against a real nginx over a real sshd.

For each phase (render, plan, stage, validate, swap, reload, verify, manifest) and each fault
(the worker killed, the SSH connection dropped, the disk full, the directories read-only,
nginx's reload failing because nginx stopped), the server must afterwards serve exactly the
old configuration or exactly the new one, an apply that failed must say why, and the next
apply must converge: every site as desired and verified, nothing left behind on the server,
the record in the database equal to the files on disk.

The managed directories are small tmpfs mounts of their own, so a full disk and a read-only
file system are real (ENOSPC, EROFS) and touch nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

import pytest

from servers import connection
from servers.engine import ApplyError
from servers.engine.engine import PHASES, Engine
from servers.engine.remote import RemoteRun
from servers.models import AppliedFile, Server
from servers.transport import TransportError
from tests.integration.conftest import start_nginx, wait_port, world_readable_tmp
from tests.integration.faults import fill, mount_tmpfs, umount
from websites.models import Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
FAULTS = ("kill", "drop", "disk_full", "read_only", "reload_fails")


class WorkerKilled(BaseException):
    """Stands for the worker process dying: no `except Exception` handler sees it."""


class Site:
    """What a site serves: old and new host names and bodies, to tell the states apart."""

    def __init__(self, nginx, domain: str) -> None:
        self.nginx, self.domain = nginx, domain


@pytest.fixture
def stage(db, sshd, admin_user):
    """A server whose nginx sites dir and panel state dir are 1 MB tmpfs mounts, five sites
    applied (s0..s4), and a pending change: s0 gains an alias, s4 is removed, s5 is new."""
    prefix = world_readable_tmp("uhp-fault-")
    (prefix / "panel.d").mkdir()
    mount_tmpfs(prefix / "panel.d", "0755")
    mount_tmpfs(prefix / "state", "0700")
    nginx = start_nginx(prefix)
    server = Server.objects.create(
        name="faulty",
        address="127.0.0.2",
        ssh_port=sshd.port,
        owner=admin_user,
        private_key=sshd.private_key,
        profile={**nginx.profile(), "nginx_reload_timeout": 5},
    )
    sites = []
    for i in range(5):
        nginx.page(f"s{i}.example.com", f"site {i}", admin_user.account_name)
        sites.append(
            Website.objects.create(domain=f"s{i}.example.com", server=server, owner=admin_user)
        )
    nginx.page("s5.example.com", "site 5", admin_user.account_name)
    t = connection.open_transport(server, reuse=False)
    Engine(server, t).apply()
    t.close()
    sites[0].aliases = "www.s0.example.com"
    sites[0].save()
    sites[4].delete()
    Website.objects.create(domain="s5.example.com", server=server, owner=admin_user)
    yield {"nginx": nginx, "server": server, "prefix": prefix}
    for d in ("panel.d", "state"):
        subprocess.run(["mount", "-o", "remount,rw", str(prefix / d)], capture_output=True)
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
        os.kill(int((prefix / "nginx.pid").read_text()), signal.SIGQUIT)
    time.sleep(0.2)
    for d in ("panel.d", "state"):
        umount(prefix / d)
    subprocess.run(["rm", "-rf", str(prefix)], capture_output=True)


def served(nginx) -> str:
    """'old' or 'new' when every site agrees, else what each one shows."""
    s0, alias, s4, s5 = (
        nginx.get("s0.example.com"),
        nginx.get("www.s0.example.com"),
        nginx.get("s4.example.com"),
        nginx.get("s5.example.com"),
    )
    for i in (1, 2, 3):  # untouched sites serve throughout
        assert nginx.get(f"s{i}.example.com") == (200, f"site {i}")
    assert s0 == (200, "site 0")
    old = alias[0] == 404 and s4 == (200, "site 4") and s5[0] == 404
    new = alias == (200, "site 0") and s4[0] == 404 and s5 == (200, "site 5")
    return "old" if old else "new" if new else f"mixed: alias {alias}, s4 {s4}, s5 {s5}"


def wait_served(nginx, wanted: set[str], timeout: float = 5.0) -> str:
    """nginx reloads asynchronously (a rollback's reload, a restart): wait for a clean state."""
    end = time.monotonic() + timeout
    while True:
        state = served(nginx)
        if state in wanted or time.monotonic() > end:
            return state
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class Injector:
    def __init__(self, stage, fault: str, phase: str) -> None:
        self.stage, self.fault, self.phase = stage, fault, phase
        self.fired = False
        self.engine: Engine | None = None

    def __call__(self, phase: str) -> None:
        if phase != self.phase or self.fired:
            return
        self.fired = True
        prefix, nginx = self.stage["prefix"], self.stage["nginx"]
        if self.fault == "kill":
            raise WorkerKilled()
        if self.fault == "drop":
            self.engine.t.drop()
        elif self.fault == "disk_full":
            fill(prefix / "panel.d")
            fill(prefix / "state")
        elif self.fault == "read_only":
            for d in ("panel.d", "state"):
                subprocess.run(["mount", "-o", "remount,ro", str(prefix / d)], check=True)
        elif self.fault == "reload_fails":
            os.kill(int((nginx.prefix / "nginx.pid").read_text()), signal.SIGQUIT)
            end = time.monotonic() + 5
            while (
                time.monotonic() < end
                and subprocess.run(
                    ["fuser", "-s", f"{nginx.port}/tcp"], capture_output=True
                ).returncode
                == 0
            ):
                time.sleep(0.05)

    def clear(self) -> None:
        prefix, nginx = self.stage["prefix"], self.stage["nginx"]
        for d in ("panel.d", "state"):
            subprocess.run(["mount", "-o", "remount,rw", str(prefix / d)], capture_output=True)
            for name in (".filler", ".filler2"):
                with contextlib.suppress(FileNotFoundError):
                    (prefix / d / name).unlink()
        if self.fault == "reload_fails" and self.fired:
            (nginx.prefix / "nginx.pid").unlink(missing_ok=True)
            subprocess.run(nginx.cmd(), check=True)
            wait_port("127.0.0.1", nginx.port)


def check_converged(stage) -> None:
    nginx, server, prefix = stage["nginx"], stage["server"], stage["prefix"]
    server.refresh_from_db()
    assert server.apply_run == ""
    assert served(nginx) == "new"
    assert sorted(p.name for p in (prefix / "panel.d").iterdir() if p.name.startswith(".")) == []
    state = prefix / "state"
    assert not (state / "lock").exists() and not (state / "pending").exists()
    assert list((state / "runs").iterdir()) == []
    t = connection.open_transport(server, reuse=False)
    try:
        record = {a.path: a for a in AppliedFile.objects.filter(server=server)}
        found = RemoteRun(t, str(state), "abcdef").hash(sorted(record))
    finally:
        t.close()
    assert set(found) == set(record)
    for path, a in record.items():
        assert (found[path].sha256, found[path].mode) == (a.sha256, a.mode), path
    wanted = {f"{nginx.sites}/s{i}.example.com.conf" for i in (0, 1, 2, 3, 5)}
    assert set(record) == wanted
    lines = "".join(p.read_text() for p in (state / "manifest").glob("*.tsv")).splitlines()
    assert {ln.split("\t")[-1]: ln.split("\t")[0] for ln in lines} == {
        p: a.sha256 for p, a in record.items()
    }


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("phase", PHASES)
def test_fault(stage, phase, fault):
    server, nginx = stage["server"], stage["nginx"]
    inject = Injector(stage, fault, phase)
    t = connection.open_transport(server, reuse=False)
    engine = Engine(
        server,
        t,
        hook=inject,
        reconnect=lambda: connection.open_transport(server, reuse=False),
        batch=False,  # a round trip per step, so a fault can land between any two
    )
    inject.engine = engine
    outcome, message = "ok", ""
    try:
        result = engine.apply()
    except WorkerKilled:
        outcome = "killed"
    except (ApplyError, TransportError) as exc:
        outcome, message = "failed", str(exc)
    finally:
        with contextlib.suppress(Exception):
            engine.t.close()
    assert inject.fired or phase in ("reload", "verify") and fault != "kill"
    inject.clear()

    state = wait_served(nginx, {"old", "new"})
    assert state in ("old", "new"), f"{fault} at {phase}: {state}"
    if outcome == "ok":
        assert state == "new" and not result.failed_units, (fault, phase, result)
    elif outcome == "failed":
        assert message.strip(), "a failed apply says why"
        if "restoring the previous files failed too" not in message:
            assert state == "old", f"{fault} at {phase} failed but serves the new config"
        if fault == "disk_full":
            assert "No space left on device" in message, message
        if fault == "read_only":
            assert "Read-only file system" in message, message

    # The next apply (a new worker, a new connection) converges.
    server.refresh_from_db()
    t = connection.open_transport(server, reuse=False)
    try:
        Engine(server, t, run_is_alive=lambda run: False).apply()
    finally:
        t.close()
    check_converged(stage)


def test_connection_drops_after_the_swap_ran_on_the_server(stage):
    """The swap command reached the server and finished there, but its answer never came
    back: the engine rolls back over a new connection and the server ends up old."""
    server, nginx = stage["server"], stage["nginx"]
    t = connection.open_transport(server, reuse=False)
    real_run = t.run

    def run(argv, **kw):
        res = real_run(argv, **kw)
        if len(argv) > 4 and argv[3] == "panel-apply" and argv[4] == "swap":
            t.drop()
            from servers.transport import ConnectionLost

            raise ConnectionLost("the connection broke during swap (test)")
        return res

    t.run = run
    engine = Engine(
        server,
        t,
        reconnect=lambda: connection.open_transport(server, reuse=False),
        batch=False,  # the separate swap command
    )
    with pytest.raises(ApplyError, match="previous files restored"):
        engine.apply()
    engine.t.close()
    assert wait_served(nginx, {"old"}) == "old"
    server.refresh_from_db()
    assert server.apply_run == ""
    t = connection.open_transport(server, reuse=False)
    Engine(server, t).apply()
    t.close()
    check_converged(stage)


@pytest.mark.django_db(transaction=True)
def test_worker_killed_for_real_between_swap_and_reload(stage):
    """A real SIGKILL of a process running the apply right after the swap: nothing of the
    engine runs afterwards. nginx keeps serving the old config; the server records a pending
    reload; the next apply finishes it (the old engine said "Nothing to do" forever)."""
    from django.db import connections

    server, nginx, prefix = stage["server"], stage["nginx"], stage["prefix"]
    connections.close_all()
    pid = os.fork()
    if pid == 0:  # the doomed worker
        try:

            def die(phase):
                if phase == "reload":
                    os.kill(os.getpid(), signal.SIGKILL)

            s = Server.objects.get(pk=server.pk)
            t = connection.open_transport(s, reuse=False)
            Engine(s, t, hook=die, batch=False).apply()
        except BaseException:
            import traceback

            (prefix / "child-error").write_text(traceback.format_exc())
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    error = prefix / "child-error"
    assert os.WIFSIGNALED(status), error.read_text() if error.exists() else status
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert served(nginx) == "old"
    assert (prefix / "state" / "pending").read_text().split()[1:] == ["nginx"]
    server.refresh_from_db()
    assert server.apply_run  # the database knows a run was interrupted after swapping
    t = connection.open_transport(server, reuse=False)
    lines: list[str] = []
    Engine(server, t, lines.append, run_is_alive=lambda run: False).apply()
    t.close()
    assert any("was interrupted" in line for line in lines)
    check_converged(stage)


def fault_step(stage, fault: str):
    """A step that causes ``fault`` on the server and succeeds, so the batch runs on into it."""
    from servers.engine import Step

    prefix, nginx = stage["prefix"], stage["nginx"]
    dirs = f"{prefix}/panel.d {prefix}/state"
    script = {
        "disk_full": f"for d in {dirs}; do cat /dev/zero > $d/.filler 2>/dev/null; done; true",
        "read_only": f"for d in {dirs}; do mount -o remount,ro $d || exit 1; done",
        "reload_fails": (
            f"pid=$(cat {nginx.prefix}/nginx.pid); kill -QUIT $pid; "
            f"while curl -s -o /dev/null http://127.0.0.1:{nginx.port}/; do sleep 0.05; done"
        ),
    }[fault]
    return Step(["sh", "-c", script])


@pytest.mark.parametrize("fault", ("disk_full", "read_only", "reload_fails"))
@pytest.mark.parametrize(
    "position", ("before-reload:nginx", "before-verify:nginx", "before-commit")
)
def test_fault_inside_the_batch(stage, fault, position):
    """The common path runs swap, reload, verification and commit as one command on the
    server; a fault between any two of them ends old (rolled back) or new (committed)."""
    server, nginx = stage["server"], stage["nginx"]
    inject = Injector(stage, fault, "-")
    inject.fired = True  # the step does it; clear() undoes it
    t = connection.open_transport(server, reuse=False)
    engine = Engine(
        server,
        t,
        reconnect=lambda: connection.open_transport(server, reuse=False),
        step_hook=lambda at: [fault_step(stage, fault)] if at == position else [],
    )
    outcome, message = "ok", ""
    try:
        result = engine.apply()
    except (ApplyError, TransportError) as exc:
        outcome, message = "failed", str(exc)
    finally:
        engine.t.close()
    inject.clear()
    state = wait_served(nginx, {"old", "new"})
    assert state in ("old", "new"), f"{fault} {position}: {state}"
    if outcome == "ok":
        assert state == "new" and not result.failed_units
    else:
        assert message.strip()
        if "restoring the previous files failed too" not in message:
            assert state == "old", message
    server.refresh_from_db()
    t = connection.open_transport(server, reuse=False)
    Engine(server, t, run_is_alive=lambda run: False).apply()
    t.close()
    check_converged(stage)


@pytest.mark.parametrize("fails", (False, True))
def test_connection_drops_while_the_batch_runs(stage, fails):
    """The batch runs on after the connection drops; a new connection finds out how it ended:
    committed (the apply succeeded) or stopped at a failing step (rolled back)."""
    from servers.engine import Step
    from servers.transport import ConnectionLost

    server, nginx = stage["server"], stage["nginx"]
    t = connection.open_transport(server, reuse=False)
    real_run = t.run

    def run(argv, **kw):
        res = real_run(argv, **kw)
        if len(argv) > 4 and argv[3] == "panel-apply" and argv[4] == "go":
            t.drop()
            raise ConnectionLost("the connection broke during the batch (test)")
        return res

    t.run = run
    engine = Engine(
        server,
        t,
        reconnect=lambda: connection.open_transport(server, reuse=False),
        step_hook=lambda at: [Step(["false"])] if fails and at == "before-commit" else [],
    )
    if fails:
        with pytest.raises(ApplyError, match="previous files restored"):
            engine.apply()
    else:
        assert not engine.apply().failed_units
    engine.t.close()
    assert wait_served(nginx, {"old" if fails else "new"}) == ("old" if fails else "new")
    server.refresh_from_db()
    t = connection.open_transport(server, reuse=False)
    Engine(server, t).apply()
    t.close()
    check_converged(stage)


@pytest.mark.django_db(transaction=True)
def test_worker_killed_for_real_while_the_batch_runs(stage):
    """SIGKILL of the worker while the server runs the batch: the server finishes it, so
    the change is live and verified; the next apply records it (checking every file)."""
    from django.db import connections

    from servers.engine import Step

    server, nginx, prefix = stage["server"], stage["nginx"], stage["prefix"]
    marker = prefix / "batch-started"
    connections.close_all()
    pid = os.fork()
    if pid == 0:
        try:
            s = Server.objects.get(pk=server.pk)
            step = Step(["sh", "-c", f"touch {marker}; sleep 1"])
            hook = lambda at: [step] if at == "before-commit" else []  # noqa: E731
            Engine(s, connection.open_transport(s, reuse=False), step_hook=hook).apply()
        finally:
            os._exit(1)
    end = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < end:
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    end = time.monotonic() + 10
    while (prefix / "state" / "lock").exists() and time.monotonic() < end:
        time.sleep(0.05)
    assert served(nginx) == "new"
    server.refresh_from_db()
    assert server.apply_run  # the panel never saw the end
    t = connection.open_transport(server, reuse=False)
    result = Engine(server, t).apply()
    t.close()
    assert result.written == [] and not result.failed_units
    check_converged(stage)
