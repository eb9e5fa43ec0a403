"""Task functions used by operation tests (real functions the worker imports by path)."""

import threading
import time

from panel.operations import OperationError

gate = threading.Event()


def steps(ctx, count: int = 3):
    for i in range(1, count + 1):
        ctx.progress(i * 100 // (count + 1), f"step {i} of {count}")
    return f"{count} steps done"


def boom(ctx):
    ctx.log("about to fail")
    raise OperationError("disk full on /var")


def wait_for_gate(ctx, seconds: float = 10):
    """Runs until the test opens the gate; used to observe serialisation and cancel."""
    ctx.progress(10, "holding")
    deadline = time.monotonic() + seconds
    while not gate.wait(0.05):
        ctx.check_cancelled()
        if time.monotonic() > deadline:
            raise OperationError("gate never opened")
    return "released"


def record_order(ctx, name: str, log: list | None = None):
    ctx.log(f"start {name}")
    time.sleep(0.3)
    ctx.log(f"end {name}")
    return name
