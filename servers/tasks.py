"""Operation tasks for servers: each opens the transport, does one thing, reports as it goes."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from core.models import Operation
from core.operations import OperationContext, OperationError
from servers import connection, facts
from servers.engine import ApplyError, registry, state
from servers.engine.drift import check_drift
from servers.engine.engine import Engine
from servers.engine.publisher import publish as run_publish
from servers.models import DriftItem, Server
from servers.transport import TransportError


def _connect(ctx: OperationContext, server: Server, reuse: bool = True):
    ctx.progress(5, f"Connecting to {server.address}:{server.ssh_port}")
    try:
        t = connection.open_transport(server, reuse=reuse)
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    if server.transport == Server.Transport.SSH:
        ctx.log(f"Host key {server.host_key_fingerprint()}")
    return t


def test_connection(ctx: OperationContext, server_id: int) -> str:
    server = Server.objects.get(pk=server_id)
    t = _connect(ctx, server, reuse=False)
    try:
        ctx.progress(40, "Running a command")
        who = t.run(["id", "-un"], timeout=20).check().stdout.strip()
        ctx.progress(70, "Reading system facts")
        _save_facts(ctx, server, facts.gather(t))  # facts are refreshed on every connect
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    finally:
        if server.transport == Server.Transport.SSH:
            t.close()
    return f"Connected as {who}"


def _save_facts(ctx: OperationContext, server: Server, found: dict) -> None:
    Server.objects.filter(pk=server.pk).update(facts=found, facts_at=timezone.now())
    ctx.log(f"{found['pretty_name']}, kernel {found['kernel']}, {found['cpu_count']} CPUs")


def gather_facts(ctx: OperationContext, server_id: int) -> str:
    server = Server.objects.get(pk=server_id)
    t = _connect(ctx, server)
    ctx.progress(30, "Reading system facts")
    try:
        _save_facts(ctx, server, facts.gather(t))
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    return "Facts updated"


def run_is_alive(run_id: str) -> bool:
    """Does the operation that holds a server-side lock still run (its worker heartbeats)?"""
    try:
        op = Operation.objects.filter(uuid=uuid.UUID(hex=run_id)).first()
    except ValueError:
        return False
    return op is not None and op.state == Operation.State.RUNNING and not op.heartbeat_stale


def apply_server(ctx: OperationContext, server_id: int, check_server: bool = False) -> str:
    return run_apply(ctx, Server.objects.get(pk=server_id), check_server)[0]


def run_apply(ctx: OperationContext, server: Server, check_server: bool = False):
    """Apply the server's dirty units inside an Operation that holds its lock: (summary,
    the engine's result or None when there was nothing to do). Other apps' tasks (websites)
    call this between their own steps."""
    units, upto = state.dirty(server)
    if units == set() and not check_server and not server.apply_run:
        ctx.log("Every change is applied already.")
        return "Nothing to do", None
    t = _connect(ctx, server)
    ctx.progress(15, "Comparing the managed files with what is applied")
    run = Engine(
        server,
        t,
        ctx.log,
        run_id=ctx.op.uuid.hex,
        reconnect=lambda: connection.open_transport(server, reuse=False),
        run_is_alive=run_is_alive,
    )
    try:
        result = run.apply(units, check_server=check_server)
    except (ApplyError, TransportError) as exc:
        with transaction.atomic():
            failed = {u: f"Not applied: {exc}" for u in run.changed_units}
            registry.report(server, set(), failed)
        raise OperationError(str(exc)) from exc
    finally:
        if run.t is not t:
            run.t.close()
    with transaction.atomic():
        registry.report(server, result.ok_units, result.failed_units)
        state.clear_dirty(server, upto)
        DriftItem.objects.filter(server=server, path__in=result.written + result.removed).delete()
    summary = (
        f"{len(result.written)} written, {len(result.removed)} removed, "
        f"reloaded: {', '.join(result.reloaded) or 'nothing'}"
    )
    if result.failed_units:
        summary += f"; {len(result.failed_units)} failed: " + ", ".join(
            sorted(result.failed_units)[:5]
        )
        for unit, why in sorted(result.failed_units.items()):
            ctx.log(f"{unit} failed: {why}", "warning")
    return summary, result


def publish(ctx: OperationContext, publisher: str, target: str) -> str:
    """Publish the dirty units of one publisher's target (servers.engine.publisher)."""
    try:
        result = run_publish(registry.publisher(publisher), target, log=ctx.log)
    except ApplyError as exc:
        raise OperationError(str(exc)) from exc
    for unit, why in sorted(result.failed_units.items()):
        ctx.log(f"{unit} failed: {why}", "warning")
    return result.summary()


def detect_drift(ctx: OperationContext, server_id: int) -> str:
    server = Server.objects.get(pk=server_id)
    t = _connect(ctx, server)
    ctx.progress(30, "Comparing every managed file with what the panel wrote")
    try:
        items = check_drift(server, t)
    except (ApplyError, TransportError) as exc:
        raise OperationError(str(exc)) from exc
    with transaction.atomic():
        DriftItem.objects.filter(server=server).delete()
        DriftItem.objects.bulk_create(
            DriftItem(
                server=server,
                path=i["path"],
                kind=i["kind"],
                expected_sha256=i["expected"],
                actual_sha256=i["actual"],
                diff=i["diff"],
            )
            for i in items
        )
        Server.objects.filter(pk=server.pk).update(drift_checked_at=timezone.now())
    for i in items:
        ctx.log(f"{i['path']}: {i['kind']}", "warning")
    return f"{len(items)} file(s) drifted" if items else "No drift"


def detect_drift_everywhere() -> int:
    """Scheduled: a drift check for every server the panel has applied to and that is not in
    maintenance (one never contacted or never applied has nothing to drift from)."""
    from servers.services import start_drift_check

    count = 0
    servers = Server.objects.exclude(
        status__in=[Server.Status.MAINTENANCE, Server.Status.UNKNOWN]
    ).filter(applied_at__isnull=False)
    for server in servers:
        start_drift_check(server, actor=None)
        count += 1
    return count
