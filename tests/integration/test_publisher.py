"""Publishers against a real BIND 9.18 on loopback: the RFC 2136 example publisher
(tests/support_publishers.py) through plan, apply, verify, revert and report, a unit BIND
refuses, a record it silently ignores, and every phase under a kill, an unreachable
nameserver and a nameserver that refuses every update. Afterwards BIND serves exactly the
old record sets or exactly the new ones, a failed run says why, and the next run converges.
"""

from __future__ import annotations

import contextlib
import select
import socket
import tempfile
import threading
from pathlib import Path

import dns.name
import dns.query
import dns.tsig
import dns.update
import pytest

from servers.engine import ApplyError, registry
from servers.engine.publisher import PHASES, Publisher, marks_of, publish
from servers.engine.state import dirty, mark_dirty
from tests.integration.bind import Bind, remove, start_bind
from tests.support_publishers import Nameserver, RecordSets

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

OLD = {
    "rrset:keep/A": (300, ["10.0.0.1"]),
    "rrset:change/A": (300, ["10.0.0.2"]),
    "rrset:gone/TXT": (300, ['"going"']),
}
NEW = {
    "rrset:keep/A": (300, ["10.0.0.1"]),
    "rrset:change/A": (600, ["10.0.0.3", "10.0.0.4"]),
    "rrset:@/MX": (300, ["10 mail.example.net."]),
}
UNITS = set(OLD) | set(NEW)


class WorkerKilled(BaseException):
    """Stands for the worker process dying: no `except Exception` handler sees it."""


def as_served(wanted: dict) -> dict[str, set[str]]:
    """What BIND's AXFR shows for a wanted set (tests/integration/bind.py::records)."""
    return {
        unit.removeprefix("rrset:"): {f"{ttl} {text}" for text in texts}
        for unit, (ttl, texts) in wanted.items()
    }


@pytest.fixture
def bind():
    daemon = start_bind(Path(tempfile.mkdtemp(prefix="uhp-bind-")))
    yield daemon
    remove(daemon)


def nameserver(bind: Bind, port: int | None = None) -> Nameserver:
    return Nameserver(
        name="ns1",
        host=bind.host,
        port=port or bind.port,
        zone=str(bind.zone),
        key_name=bind.key_name,
        secret=bind.secret,
    )


@pytest.fixture
def pub(bind):
    publisher = RecordSets()
    publisher.targets["ns1"] = nameserver(bind)
    with registry.only_publishers(publisher):
        yield publisher


def run(pub: RecordSets, units=None, **kw):
    """Mark ``units`` (every unit when None) and publish them."""
    mark_dirty(marks_of(pub, "ns1"), units)
    return publish(pub, "ns1", **kw)


def marks(pub: RecordSets):
    return dirty(marks_of(pub, "ns1"))[0]


class TestPublish:
    def test_plan_apply_verify_report(self, bind, pub):
        pub.wanted = dict(OLD)
        serial = bind.soa_serial()
        result = run(pub, set(OLD))
        assert result.changed == set(OLD) and not result.failed_units
        assert bind.records() == as_served(OLD)
        # One UPDATE for the whole change (one serial step), one read to plan, one to verify.
        assert pub.sent == {"update": 1, "axfr": 2}
        assert bind.soa_serial() == serial + 1
        assert pub.reported == [(set(OLD), {})]
        assert marks(pub) == set()

        pub.wanted, pub.sent = dict(NEW), type(pub.sent)()
        result = run(pub, UNITS)
        assert result.changed == UNITS - {"rrset:keep/A"} and result.unchanged == 1
        assert bind.records() == as_served(NEW)
        assert pub.sent["update"] == 1
        assert pub.reported[-1] == (UNITS, {})

    def test_a_no_op_sends_nothing(self, bind, pub):
        pub.wanted = dict(NEW)
        run(pub)
        serial, pub.sent = bind.soa_serial(), type(pub.sent)()
        result = run(pub)  # every unit marked: read, compare, nothing to send
        assert pub.sent == {"axfr": 1}
        assert result.changed == set() and result.unchanged == len(NEW)
        assert bind.soa_serial() == serial
        assert pub.reported[-1] == (set(NEW), {})

    def test_nothing_dirty_contacts_nothing(self, bind, pub):
        pub.wanted = dict(NEW)
        run(pub)
        pub.sent = type(pub.sent)()
        pub.targets["ns1"] = nameserver(bind, port=1)  # nothing listens there
        lines: list[str] = []
        result = publish(pub, "ns1", log=lines.append)
        assert result.nothing_dirty and result.summary() == "Nothing to do"
        assert pub.sent == {} and lines == ["Every change is published already."]

    def test_a_unit_bind_refuses_fails_alone(self, bind, pub):
        pub.wanted = {**OLD, "rrset:locked/A": (300, ["10.0.0.9"])}  # the policy denies it
        result = run(pub)
        assert set(result.failed_units) == {"rrset:locked/A"}
        assert "REFUSED" in result.failed_units["rrset:locked/A"]
        assert result.changed == set(OLD)
        assert bind.records() == as_served(OLD)
        assert pub.status["rrset:locked/A"].startswith("failed: the nameserver answered REFUSED")
        assert marks(pub) == {"rrset:locked/A"}  # BIND's side may change: tried again

    def test_a_record_bind_ignores_is_reverted(self, bind, pub):
        """A CNAME beside other data: BIND answers NOERROR and ignores it. Verification
        catches it; the unit is reverted and fails, the other change in the run goes live."""
        pub.wanted = dict(OLD)
        run(pub)
        pub.wanted = {
            **OLD,
            "rrset:keep/CNAME": (300, ["elsewhere.example.net."]),
            "rrset:change/A": (300, ["10.0.0.5"]),
        }
        result = run(pub, {"rrset:keep/CNAME", "rrset:change/A"})
        assert result.changed == {"rrset:change/A"}
        why = result.failed_units["rrset:keep/CNAME"]
        assert "took the change but serves nothing, expected CNAME elsewhere" in why
        assert bind.records() == as_served({**OLD, "rrset:change/A": (300, ["10.0.0.5"])})

    def test_invalid_units_never_reach_the_nameserver(self, bind, pub):
        pub.wanted = dict(OLD)
        run(pub)
        pub.wanted = {
            **OLD,
            "rrset:change/A": (300, ["not-an-address"]),  # served: it keeps what it serves
            "rrset:www.other.test./A": (300, ["10.0.0.1"]),
            "rrset:x/SOA": (300, ["a. b. 1 2 3 4 5"]),
            "rrset:new/TXT": (300, ['"fine"']),
        }
        pub.sent.clear()
        result = run(pub)
        assert set(result.failed_units) == {
            "rrset:change/A",
            "rrset:www.other.test./A",
            "rrset:x/SOA",
        }
        assert "not in the zone" in result.failed_units["rrset:www.other.test./A"]
        assert result.changed == {"rrset:new/TXT"} and pub.sent["update"] == 1
        assert bind.records() == as_served({**OLD, "rrset:new/TXT": (300, ['"fine"'])})
        assert marks(pub) == set()  # an input error waits for the input to change

    def test_a_change_by_hand_meanwhile_is_not_overwritten(self, bind, pub):
        """The UPDATE's prerequisites are what the plan read: a record changed between plan
        and apply refuses that unit (YXRRSET/NXRRSET) and keeps the hand change."""
        pub.wanted = dict(OLD)
        run(pub)
        pub.wanted = {
            **OLD,
            "rrset:change/A": (300, ["10.0.0.7"]),
            "rrset:new/A": (300, ["10.0.0.8"]),
        }

        def by_hand(phase):
            if phase == "apply":
                msg = dns.update.UpdateMessage(
                    bind.zone, keyring=bind.keyring(), keyname=bind.key_name
                )
                msg.replace("change", 300, "A", "10.0.0.66")
                dns.query.tcp(msg, bind.host, port=bind.port, timeout=3)

        result = run(pub, {"rrset:change/A", "rrset:new/A"}, hook=by_hand)
        assert "changed since it was read" in result.failed_units["rrset:change/A"]
        assert result.changed == {"rrset:new/A"}
        assert bind.records()["change/A"] == {"300 10.0.0.66"}
        assert marks(pub) == {"rrset:change/A"}
        result = run(pub, set())  # the next publish takes the marked unit again
        assert result.changed == {"rrset:change/A"}
        assert bind.records()["change/A"] == {"300 10.0.0.7"}

    def test_secrets_stay_out_of_words(self, bind, pub):
        target = pub.targets["ns1"]
        assert bind.secret not in repr(target) and bind.secret not in str(target)
        bind.stop()
        pub.wanted = dict(OLD)
        with pytest.raises(ApplyError) as caught:
            run(pub)
        assert bind.secret not in str(caught.value)


# -- faults -------------------------------------------------------------------------------
FAULTS = ("kill", "drop", "unreachable", "apply_fails")


class DropProxy:
    """A TCP relay to BIND that can drop the next connection once BIND has answered its
    first message: an UPDATE is then live and the publisher hears only a closed connection;
    a transfer breaks off half-way."""

    def __init__(self, bind: Bind) -> None:
        self.bind = bind
        self.drop_next = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._relay, args=(client,), daemon=True)
            self.threads.append(t)
            t.start()

    @staticmethod
    def _read_message(sock: socket.socket) -> bytes:
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _relay(self, client: socket.socket) -> None:
        upstream = (self.bind.host, self.bind.port)
        with (
            client,
            contextlib.suppress(EOFError, OSError),
            socket.create_connection(upstream) as server,
        ):
            server.sendall(self._read_message(client))
            if self.drop_next:
                self.drop_next = False
                self._read_message(server)  # BIND has answered (an UPDATE is applied)
                return
            pair = {client: server, server: client}
            while True:
                ready, _, _ = select.select(list(pair), [], [], 5)
                if not ready:
                    return
                for sock in ready:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    pair[sock].sendall(chunk)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone does not
        self.listener.close()
        self.accepting.join(5)
        for t in self.threads:
            t.join(5)


class Injector:
    def __init__(self, bind: Bind, proxy: DropProxy, fault: str, phase: str) -> None:
        self.bind, self.proxy, self.fault, self.phase = bind, proxy, fault, phase
        self.fired = False

    def __call__(self, phase: str) -> None:
        if phase != self.phase or self.fired:
            return
        self.fired = True
        if self.fault == "kill":
            raise WorkerKilled()
        if self.fault == "drop":
            self.proxy.drop_next = True
        elif self.fault == "unreachable":
            self.bind.stop()
        elif self.fault == "apply_fails":
            self.bind.freeze()

    def clear(self) -> None:
        self.proxy.drop_next = False
        if self.fault == "unreachable" and not self.bind.running:
            self.bind.start()
        elif self.fault == "apply_fails":
            self.bind.thaw()


def served(bind: Bind) -> str:
    records = bind.records()
    if records == as_served(OLD):
        return "old"
    if records == as_served(NEW):
        return "new"
    return f"mixed: {records}"


@pytest.fixture
def stage(bind, pub):
    """OLD published; NEW wanted: one unit unchanged, one changed, one removed, one added.
    The publisher reaches BIND through a relay that can drop a connection."""
    pub.wanted = dict(OLD)
    run(pub)
    pub.wanted = dict(NEW)
    mark_dirty(marks_of(pub, "ns1"), UNITS)
    pub.reported.clear()
    proxy = DropProxy(bind)
    yield proxy
    proxy.close()


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("phase", PHASES)
def test_fault(bind, pub, stage, phase, fault):
    inject = Injector(bind, stage, fault, phase)
    if fault == "drop":
        pub.targets["ns1"] = nameserver(bind, port=stage.port)
    outcome, message, result = "ok", "", None
    try:
        result = publish(pub, "ns1", hook=inject)
    except WorkerKilled:
        outcome = "killed"
    except ApplyError as exc:
        outcome, message = "failed", str(exc)
    assert inject.fired
    inject.clear()

    state = served(bind)
    assert state in ("old", "new"), f"{fault} at {phase}: {state}"
    if outcome == "ok" and result.failed_units:
        # Every update refused: each unit keeps what it served, says why, and stays marked.
        assert state == "old" and set(result.failed_units) == UNITS - {"rrset:keep/A"}
        assert all("REFUSED" in why for why in result.failed_units.values())
        assert pub.reported[-1][1] == result.failed_units
    elif outcome == "ok":
        assert state == "new", (fault, phase, result)
    elif outcome == "failed":
        assert message.strip(), "a failed run says why"
        if "restoring the previous state failed too" not in message:
            assert state == "old", f"{fault} at {phase} failed but serves the new state"
        if fault == "drop" and phase != "plan":  # the change went out: it was taken back
            assert "(previous state restored)" in message, message
        ok, failed = pub.reported[-1]  # reported on failure too
        assert not ok and failed and all(w.startswith("Not published: ") for w in failed.values())
    else:
        assert state == ("old" if PHASES.index(phase) < PHASES.index("verify") else "new")

    # The next run (a new worker) converges.
    pub.reported.clear()
    result = publish(pub, "ns1")
    assert served(bind) == "new"
    assert not result.failed_units and marks(pub) == set()
    if result.nothing_dirty:  # the run above succeeded and left nothing to do
        assert outcome == "ok" and pub.reported == []
    else:
        assert pub.reported == [(result.ok_units, {})]


# -- through a real Operation -----------------------------------------------------------------
class TestOperation:
    def test_publish_operation_end_to_end(
        self, bind, pub, admin_user, q_sync, django_capture_on_commit_callbacks
    ):
        from servers import services

        pub.wanted = {**NEW, "rrset:locked/A": (300, ["10.0.0.9"])}
        with django_capture_on_commit_callbacks(execute=True):
            op = services.start_publish(
                pub.name, "ns1", actor=admin_user, owner=admin_user, units=set(pub.wanted)
            )
        op.refresh_from_db()
        assert op.state == "succeeded", op.error
        assert op.lock_key == "nameserver:ns1" and op.args == {
            "publisher": pub.name,
            "target": "ns1",
        }
        assert op.message == "3 changed, 0 unchanged; 1 failed: rrset:locked/A"
        assert op.lines.filter(message__contains="answered REFUSED", level="warning").exists()
        assert bind.records() == as_served(NEW)
        assert pub.status["rrset:@/MX"] == "published"

    def test_nothing_dirty_needs_no_connection(
        self, bind, pub, admin_user, q_sync, django_capture_on_commit_callbacks
    ):
        from core.operations import start_operation

        pub.targets["ns1"] = nameserver(bind, port=1)
        with django_capture_on_commit_callbacks(execute=True):
            op = start_operation(
                kind="publish",
                task="servers.tasks.publish",
                owner=admin_user,
                lock_key="nameserver:ns1",
                args={"publisher": pub.name, "target": "ns1"},
            )
        op.refresh_from_db()
        assert op.state == "succeeded" and op.message == "Nothing to do"
        assert pub.sent == {}

    def test_a_failed_publish_says_why_and_is_reported(
        self, bind, pub, admin_user, q_sync, django_capture_on_commit_callbacks
    ):
        from servers import services

        pub.wanted = dict(NEW)
        bind.stop()
        with django_capture_on_commit_callbacks(execute=True):
            op = services.start_publish(
                pub.name, "ns1", actor=admin_user, owner=admin_user, units=set(NEW)
            )
        op.refresh_from_db()
        assert op.state == "failed" and "Connection refused" in op.error, op.error
        assert all(s.startswith("failed: Not published: ") for s in pub.status.values())
        assert marks(pub) == set(NEW)  # left for the next publish
        bind.start()
        with django_capture_on_commit_callbacks(execute=True):
            op = services.start_publish(pub.name, "ns1", actor=admin_user, owner=admin_user)
        op.refresh_from_db()
        assert op.state == "succeeded" and bind.records() == as_served(NEW)

    def test_a_server_target_shares_the_servers_lock(self, admin_user):
        from servers.models import Server

        server = Server.objects.create(name="ns-host", address="127.0.0.9", owner=admin_user)
        assert Publisher().lock_key(server) == server.lock_key
