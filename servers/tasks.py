"""Operation tasks for servers: each opens the transport, does one thing, reports as it goes."""

from __future__ import annotations

import contextlib

from django.db import transaction
from django.utils import timezone

from core.operations import OperationContext, OperationError
from servers import apply as engine
from servers import connection, facts
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


def apply_server(ctx: OperationContext, server_id: int) -> str:
    server = Server.objects.get(pk=server_id)
    t = _connect(ctx, server)
    ctx.progress(15, "Comparing the managed files with the server")
    run = engine.Engine(server, t, ctx.log, run_id=ctx.op.uuid.hex[:12])
    try:
        result = run.apply()
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    finally:
        with contextlib.suppress(TransportError):
            run.clear_stage()
    with transaction.atomic():
        for provider in engine.providers():
            provider.report(server, result.ok_units, result.failed_units)
        Server.objects.filter(pk=server.pk).update(applied_at=timezone.now())
        if result.changed:
            DriftItem.objects.filter(server=server, path__in=result.written).delete()
        DriftItem.objects.filter(server=server, path__in=result.removed).delete()
    summary = (
        f"{len(result.written)} written, {len(result.removed)} removed, "
        f"reloaded: {', '.join(result.reloaded) or 'nothing'}"
    )
    if result.failed_units:
        summary += f"; {len(result.failed_units)} failed validation"
    return summary


def detect_drift(ctx: OperationContext, server_id: int) -> str:
    server = Server.objects.get(pk=server_id)
    t = _connect(ctx, server)
    ctx.progress(30, "Comparing files with the manifest")
    try:
        items = engine.Engine(server, t, ctx.log).drift()
    except TransportError as exc:
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
