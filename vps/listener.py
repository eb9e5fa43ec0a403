"""libvirt lifecycle events (docs/vps.md, "Lifecycle events"): one listener per enabled
hypervisor keeps a connection open with ``virConnectDomainEventRegisterAny(LIFECYCLE)``, so
a domain started, stopped, paused or undefined outside the panel shows on the VPS's page
within moments (the state is stored and the live event sent). A lost connection (close
callback, keepalive, a failed call) is reopened with exponential backoff; the scheduled
inventory refresh stays the safety net for whatever happened while it was down.

``manage.py vps_events`` runs every listener in one process (``runpanel`` starts it next to
the worker); the listeners' callbacks run in that process's main loop, never in a request.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import suppress

from django.db import close_old_connections, transaction

from core import events
from vps import libvirt_adapter as lv
from vps.models import Hypervisor, Vps

log = logging.getLogger(__name__)

# The panel's states a lifecycle event means (None: nothing to write, e.g. DEFINED).
_EVENT_STATE = {
    "STARTED": Vps.State.RUNNING,
    "RESUMED": Vps.State.RUNNING,
    "SUSPENDED": Vps.State.PAUSED,
    "PMSUSPENDED": Vps.State.PAUSED,
    "STOPPED": Vps.State.STOPPED,
    "SHUTDOWN": None,  # the guest is shutting down; STOPPED follows
    "CRASHED": Vps.State.STOPPED,
    "UNDEFINED": Vps.State.MISSING,
    "DEFINED": None,
}
# States the panel itself is moving a VPS through: an event must not overwrite them.
_HANDS_OFF = (Vps.State.PENDING, Vps.State.DELETING, Vps.State.DELETED, Vps.State.SUSPENDED)

_loop_lock = threading.Lock()
_loop_ready = False


def ensure_event_loop() -> None:
    """libvirt's default event loop implementation, registered once per process (before
    any connection that should deliver events is opened)."""
    global _loop_ready
    with _loop_lock:
        if not _loop_ready:
            libvirt = lv._libvirt()
            libvirt.virEventRegisterDefaultImpl()
            # A periodic timer, so one loop iteration never blocks for long.
            libvirt.virEventAddTimeout(250, lambda *_: None, None)
            _loop_ready = True


def run_loop_once() -> None:
    lv._libvirt().virEventRunDefaultImpl()


def apply_event(hypervisor_id: int, domain_name: str, event: str) -> Vps | None:
    """Store what a lifecycle event says about one of the panel's domains and announce it
    (the VPS's page updates). Unknown domains and VPSes the panel is busy with are left."""
    state = _EVENT_STATE.get(event)
    if state is None or not domain_name.startswith("vps-"):
        return None
    try:
        key = uuid.UUID(hex=domain_name[4:])
    except ValueError:
        return None
    with transaction.atomic():
        vps = (
            Vps.objects.select_for_update()
            .select_related("owner")
            .filter(uuid=key, hypervisor_id=hypervisor_id)
            .exclude(state__in=_HANDS_OFF)
            .first()
        )
        if vps is None or vps.state == state:
            return None
        Vps.objects.filter(pk=vps.pk).update(state=state)
        vps.state = state
        events.changed(vps, data={"state": state, "source": "libvirt"})
    return vps


class HypervisorListener:
    """One hypervisor's event connection, reopened with backoff when it is lost."""

    def __init__(self, hypervisor: Hypervisor, *, backoff: float = 1.0, max_backoff: float = 60):
        self.hypervisor = hypervisor
        self.min_backoff, self.max_backoff = backoff, max_backoff
        self.backoff = backoff
        self.next_attempt = 0.0
        self.conn = None
        self.lost = False
        self.failures = 0
        self.applied = 0
        self.callback_id: int | None = None
        self._session = None

    # -- connection ---------------------------------------------------------------------
    def alive(self) -> bool:
        if self.conn is None or self.lost:
            return False
        try:
            return bool(self.conn.isAlive())
        except Exception:
            return False

    def ensure_connected(self, now: float | None = None) -> bool:
        """Open (or reopen) the connection when its backoff allows; True when connected."""
        if self.alive():
            return True
        now = time.monotonic() if now is None else now
        if self.conn is not None or self.lost:
            self._drop(now)
        if now < self.next_attempt:
            return False
        libvirt = lv._libvirt()
        opener = lv.connect(self.hypervisor)
        try:
            conn = opener.__enter__().conn
        except Exception as exc:
            return self._failed(now, exc)
        try:
            self.callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
            )
            conn.registerCloseCallback(self._on_close, None)
            if not self.hypervisor.is_test_driver:
                conn.setKeepAlive(5, 3)  # a dead peer is noticed within ~20 s
        except Exception as exc:
            with suppress(Exception):
                opener.__exit__(None, None, None)
            return self._failed(now, exc)
        self._session = opener
        self.conn, self.lost = conn, False
        self.backoff = self.min_backoff
        log.info("listening to lifecycle events of %s", self.hypervisor)
        return True

    def _failed(self, now: float, exc: Exception) -> bool:
        self.failures += 1
        self.next_attempt = now + self.backoff
        log.warning("events from %s: %s (again in %.0f s)", self.hypervisor, exc, self.backoff)
        self.backoff = min(self.backoff * 2, self.max_backoff)
        return False

    def _drop(self, now: float | None = None) -> None:
        session, self._session, self.conn = self._session, None, None
        self.lost = False
        if session is not None:
            with suppress(Exception):  # the connection is gone already
                session.__exit__(None, None, None)
        now = time.monotonic() if now is None else now
        self.next_attempt = max(self.next_attempt, now + self.backoff)
        self.backoff = min(self.backoff * 2, self.max_backoff)

    def close(self) -> None:
        if self.conn is not None and self.callback_id is not None:
            with suppress(Exception):
                self.conn.domainEventDeregisterAny(self.callback_id)
        self.callback_id = None
        self._drop()

    # -- callbacks (run inside the event loop) -------------------------------------------
    def _on_close(self, _conn, reason, _opaque) -> None:
        log.warning("lost the event connection to %s (reason %s)", self.hypervisor, reason)
        self.lost = True

    def _on_lifecycle(self, _conn, dom, event, _detail, _opaque) -> None:
        name = _event_name(event)
        try:
            if apply_event(self.hypervisor.pk, dom.name(), name) is not None:
                self.applied += 1
        except Exception:  # one bad event must not stop the loop
            log.exception("lifecycle event %s of %s", name, self.hypervisor)


def _event_name(code: int) -> str:
    libvirt = lv._libvirt()
    for name in _EVENT_STATE:
        if getattr(libvirt, f"VIR_DOMAIN_EVENT_{name}", None) == code:
            return name
    return str(code)


def run_forever(stop: threading.Event | None = None, *, rescan: float = 60.0) -> None:
    """Listen to every enabled hypervisor until ``stop`` is set: the set of hypervisors is
    read again every ``rescan`` seconds (added, disabled or deleted ones)."""
    ensure_event_loop()
    stop = stop or threading.Event()
    listeners: dict[int, HypervisorListener] = {}
    scanned = 0.0
    while not stop.is_set():
        now = time.monotonic()
        if now - scanned >= rescan:
            scanned = now
            try:
                enabled = Hypervisor.objects.filter(enabled=True).select_related("server")
                wanted = {hv.pk: hv for hv in enabled}
            except Exception:  # the database away for a moment: keep what runs, retry
                log.exception("reading the hypervisors to listen to")
                close_old_connections()
                wanted = {pk: li.hypervisor for pk, li in listeners.items()}
            for pk in set(listeners) - set(wanted):
                listeners.pop(pk).close()
            for pk, hv in wanted.items():
                listeners.setdefault(pk, HypervisorListener(hv))
        for listener in listeners.values():
            listener.ensure_connected(now)
        run_loop_once()
        close_old_connections()  # a long-lived process: drop connections past their age
    for listener in listeners.values():
        listener.close()
