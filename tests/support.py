"""Task functions used by operation tests (real functions the worker imports by path)."""

import threading
import time

from core.operations import OperationError

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


class PoolFiles:
    """An apply provider for tests: PHP-FPM pools as the websites work will render them."""

    pools: dict[str, str] = {}  # unit -> pool body lines (set by the test)

    def files(self, server, profile):
        from servers.apply import ManagedFile

        pool_dir = profile.php_pool_dir.replace("{php}", "8.2")
        for unit, body in sorted(self.pools.items()):
            name = unit.split(":")[1]
            yield ManagedFile(
                path=f"{pool_dir}/{name}.conf",
                content=body.encode(),
                service="php-fpm8.2",
                unit=unit,
            )

    def report(self, server, ok_units, failed_units):
        pass
