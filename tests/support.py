"""Task functions used by operation tests (real functions the worker imports by path)."""

import contextlib
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


def hold_file(ctx, path: str, seconds: float = 30):
    """Runs while ``path`` exists: a gate a test in another process holds (worker tests)."""
    from pathlib import Path

    ctx.progress(10, "holding")
    deadline = time.monotonic() + seconds
    while Path(path).exists():
        if time.monotonic() > deadline:
            raise OperationError("gate never opened")
        time.sleep(0.05)
    return "released"


def refused(ctx):
    """Fails the way an SSH connection to a closed port does."""
    from servers.transport import TransportError

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as exc:
            raise TransportError(f"cannot reach 10.0.0.1:6379: {exc}", retryable=True) from exc
    except TransportError as exc:
        raise OperationError(str(exc)) from exc


class PoolFiles:
    """An apply provider for tests: PHP-FPM pools, one unit each (``pool:NAME``)."""

    unit_prefix = "pool:"
    profile_keys = ()
    pools: dict[str, str] = {}  # unit -> pool body (set by the test)
    mode = 0o644

    def files(self, server, profile, units):
        from servers.engine import ManagedFile

        pool_dir = profile.php_pool_dir.replace("{php}", "8.2")
        for unit, body in sorted(self.pools.items()):
            if units is not None and unit not in units:
                continue
            yield ManagedFile(
                path=f"{pool_dir}/{unit.split(':')[1]}.conf",
                content=body.encode(),
                service="php-fpm8.2",
                unit=unit,
                mode=self.mode,
            )

    def report(self, server, ok, failed):
        self.reported = (set(ok), dict(failed))


class PhpSiteFiles:
    """A PHP site as one unit (``phpsite:NAME``): its pool and the vhost that passes PHP to
    the pool's socket. ``sites`` maps a name to (pool socket, the socket the vhost uses)."""

    unit_prefix = "phpsite:"
    profile_keys = ()
    sites: dict[str, tuple[str, str]] = {}
    base = ""  # the php-fpm fixture's directory (sockets, document roots)

    def files(self, server, profile, units):
        from servers.engine import ManagedFile, Probe
        from websites.nginx import with_probe

        for name, (pool_socket, vhost_socket) in sorted(self.sites.items()):
            unit = f"{self.unit_prefix}{name}"
            if units is not None and unit not in units:
                continue
            pool = (
                f"[{name}]\nuser = nobody\ngroup = nogroup\nlisten = {pool_socket}\n"
                "listen.mode = 0666\npm = static\npm.max_children = 1\n"
            )
            yield ManagedFile(
                path=f"{profile.php_pool_dir.replace('{php}', '8.2')}/{name}.conf",
                content=pool.encode(),
                service="php-fpm8.2",
                unit=unit,
            )
            body = (
                "server {\n"
                f"    listen {profile.nginx_listen};\n"
                f"    server_name {name}.php.example;\n"
                f"    root {self.base}/www;\n"
                "    location ~ \\.php$ {\n"
                f"        fastcgi_pass unix:{vhost_socket};\n"
                "        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
                "        fastcgi_param REQUEST_METHOD $request_method;\n"
                "        fastcgi_param QUERY_STRING $query_string;\n"
                "    }\n"
                "}\n"
            )
            text, revision = with_probe(body, profile.nginx_listen)
            yield ManagedFile(
                path=f"{profile.nginx_sites_dir}/{name}.php.conf",
                content=text.encode(),
                service="nginx",
                unit=unit,
                probe=Probe(
                    hosts=(f"{name}.php.example",), revision=revision, gateway_paths=("/i.php",)
                ),
            )

    def report(self, server, ok, failed):
        self.reported = (set(ok), dict(failed))


class PlainFiles:
    """Provider for tests: files of the no-op ``test-files`` service (unit ``plain:NAME``)."""

    unit_prefix = "plain:"
    profile_keys = ()
    files_wanted: dict[str, tuple[str, bytes, int, str]] = {}  # unit -> (path, body, mode, owner)

    def files(self, server, profile, units):
        from servers.engine import ManagedFile

        for unit, (path, body, mode, owner) in sorted(self.files_wanted.items()):
            if units is None or unit in units:
                yield ManagedFile(path, body, "test-files", unit, mode, owner, owner)

    def report(self, server, ok, failed):
        self.reported = (set(ok), dict(failed))


def register_test_service() -> None:
    """A service that validates, reloads and verifies nothing (idempotent)."""
    from servers.engine import Service, registry

    class TestFilesService(Service):
        name = "test-files"
        reload_order = 10
        validated_by_jobs = True  # it validates nothing

    with contextlib.suppress(ValueError):  # registered by an earlier test already
        registry.register_service(TestFilesService)


def chatter(ctx, before: int = 50, after: int = 50, pause: bool = True):
    """Logs numbered lines; with ``pause`` it waits for the gate between the two batches."""
    for i in range(1, before + 1):
        ctx.log(f"line {i}")
    if pause:
        while not gate.wait(0.05):
            ctx.check_cancelled()
    for i in range(before + 1, before + after + 1):
        ctx.log(f"line {i}")
    return f"{before + after} lines"


def bug(ctx):
    """A programming error inside a task (not an expected failure)."""
    return {}["missing"]
