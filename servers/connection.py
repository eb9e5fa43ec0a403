"""Open a transport to a Server row: pins the host key, records mismatches, reuses connections."""

from __future__ import annotations

import ipaddress
import threading

from django.utils import timezone

from servers.models import Server
from servers.transport import (
    HostKeyMismatch,
    LocalTransport,
    SockFactory,
    SSHTransport,
    Transport,
    TransportError,
)

_pool: dict[str, SSHTransport] = {}
_pool_lock = threading.Lock()


def open_transport(
    server: Server,
    *,
    sock_factory: SockFactory | None = None,
    reuse: bool = True,
    timeout: float = 10,
    record_status: bool = True,
) -> Transport:
    """A connection to ``server``. ``record_status=False`` leaves ``status`` alone on failure
    (the monitoring collector counts failed rounds and decides when a server is offline)."""
    if server.transport == Server.Transport.LOCAL:
        return LocalTransport()
    key = f"{server.pk}:{server.address}:{server.ssh_port}:{server.ssh_user}"
    with _pool_lock:
        cached = _pool.get(key)
        if reuse and cached is not None and cached.active and sock_factory is None:
            return cached
    try:
        transport = SSHTransport(
            server.address,
            server.ssh_port,
            server.ssh_user,
            private_key=server.private_key if server.auth_method == Server.Auth.KEY else "",
            password=server.password if server.auth_method == Server.Auth.PASSWORD else "",
            known_host_key=server.host_key,
            sock_factory=sock_factory,
            timeout=timeout,
        )
    except HostKeyMismatch as exc:
        Server.objects.filter(pk=server.pk).update(
            pending_host_key=exc.offered, last_error=str(exc)
        )
        raise
    except TransportError as exc:
        offline = exc.retryable and record_status
        Server.objects.filter(pk=server.pk).update(
            status=Server.Status.OFFLINE if offline else server.status, last_error=str(exc)
        )
        raise
    address, port = _seen_from_server(transport)
    updates = {
        "last_seen_at": timezone.now(),
        "last_error": "",
        "panel_address": address,
        "panel_ssh_port": port,
    }
    server.panel_address, server.panel_ssh_port = address, port
    if not server.host_key:
        updates["host_key"] = server.host_key = transport.host_key  # first contact: pin it
    if record_status and server.status in (Server.Status.UNKNOWN, Server.Status.OFFLINE):
        updates["status"] = server.status = Server.Status.ONLINE
    Server.objects.filter(pk=server.pk).update(**updates)
    if reuse and sock_factory is None:
        with _pool_lock:
            old = _pool.pop(key, None)
            if old is not None and old is not transport:
                old.close()
            _pool[key] = transport
    return transport


def _seen_from_server(transport: SSHTransport) -> tuple[str | None, int | None]:
    """The panel's address and the SSH port as the server sees them ($SSH_CONNECTION is
    "client-ip client-port server-ip server-port"): right behind NAT and port-forwards."""
    try:
        res = transport.run(["printenv", "SSH_CONNECTION"], timeout=15)
    except TransportError:
        return None, None
    parts = res.stdout.split()
    if not res.ok or len(parts) != 4 or not parts[3].isdigit():
        return None, None
    try:
        address = str(ipaddress.ip_address(parts[0].split("%")[0]))
    except ValueError:
        return None, None
    return address, int(parts[3])


def forget(server: Server) -> None:
    """Drop pooled connections to a server (after its credentials or host key change)."""
    with _pool_lock:
        for key in [k for k in _pool if k.startswith(f"{server.pk}:")]:
            _pool.pop(key).close()
