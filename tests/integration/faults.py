"""Fault injection shared by the fault suites: a worker process killed for real (SIGKILL) at
a chosen point of an Operation, SSH connections that break after a chosen command, and
small tmpfs mounts that fill up (a real ENOSPC touching nothing else on the machine)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.db import connections
from django.utils import timezone

from core.models import Operation
from servers.transport import ConnectionLost


def die() -> None:
    """What a worker does when the kernel kills it: nothing more, not even a finally."""
    os.kill(os.getpid(), signal.SIGKILL)


def run_in_doomed_worker(op: Operation, arm: Callable[[], None]) -> None:
    """Run ``op`` in a forked worker process; ``arm()`` runs in that process first and
    patches in a call to ``die()`` where the fault should strike. Asserts the worker was
    killed (not that it finished or raised), then lets the reaper notice the silence."""
    from core.tasks import reap_stale_operations

    error = Path(tempfile.mkdtemp(prefix="uhp-doomed-")) / "error"
    connections.close_all()
    pid = os.fork()
    if pid == 0:
        try:
            from core.operations import execute_operation
            from servers import connection

            connection._pool.clear()  # the parent's connections are not this process's
            arm()
            execute_operation(op.pk)
        except BaseException:
            import traceback

            error.write_text(traceback.format_exc())
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), error.read_text() if error.exists() else status
    op.refresh_from_db()
    assert op.state == Operation.State.RUNNING  # nobody knows yet
    Operation.objects.filter(pk=op.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert reap_stale_operations() == 1
    op.refresh_from_db()


def drop_after(
    monkeypatch, match: Callable[[list[str]], bool], *, run_it: bool = True
) -> list[str]:
    """Every transport opened from now on runs commands for real, but the first command
    ``match(argv)`` accepts loses its connection after it ran on the server (or, without
    ``run_it``, instead of running it): its answer never comes back (the connection is
    closed for real). Returns the dropped commands."""
    from servers import connection

    real_open = connection.open_transport
    dropped: list[str] = []

    def open_transport(*args, **kwargs):
        t = real_open(*args, **kwargs)
        if getattr(t, "_fault_wrapped", False):
            return t
        real_run = t.run

        def run(argv, **kw):
            hit = not dropped and match(list(argv))
            res = real_run(argv, **kw) if run_it or not hit else None
            if hit:
                dropped.append(" ".join(argv))
                t.drop()
                raise ConnectionLost("the connection broke (test)")
            return res

        t.run = run
        t._fault_wrapped = True
        return t

    monkeypatch.setattr(connection, "open_transport", open_transport)
    connection._pool.clear()
    return dropped


def mount_tmpfs(path, mode: str) -> None:
    path.mkdir(exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=1m,mode={mode}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        from tests.conftest import require_real

        require_real(f"cannot mount a tmpfs for fault tests: {res.stderr.strip()}")


def umount(path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory) -> None:
    with open(directory / ".filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError):
        (directory / ".filler2").write_bytes(b"\0" * 4096)
