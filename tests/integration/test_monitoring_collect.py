"""The collectors against real programs: a loopback sshd reading this machine's /proc, a
private prometheus-node-exporter, and dead servers that must delay nobody."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from core.models import LiveEvent
from monitoring import agentless, exporter
from monitoring.collector import SAMPLE_TOPIC, collect_round
from monitoring.models import Sample, ServerMonitor
from servers import connection
from servers.models import Server
from tests.integration.conftest import SSH_HOST, free_port, need, wait_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def node_exporter():
    program = need("prometheus-node-exporter")
    port = free_port()
    proc = subprocess.Popen(
        [
            program,
            f"--web.listen-address=127.0.0.1:{port}",
            "--no-collector.systemd",
            "--collector.processes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def silent_port():
    """Accepts TCP connections and never says a word: an SSH handshake there hangs."""
    with socket.socket() as s:
        s.bind((SSH_HOST, 0))
        s.listen(50)
        yield s.getsockname()[1]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PANEL_MONITORING_TIMEOUT = 2
    settings.PANEL_MONITORING_OFFLINE_AFTER = 2
    yield
    for key in list(connection._pool):
        with contextlib.suppress(Exception):
            connection._pool.pop(key).close()


def _meminfo_total() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return float(line.split()[1]) * 1024
    raise AssertionError


def _server(name, admin, **kw) -> Server:
    return Server.objects.create(name=name, owner=admin, **kw)


def test_agentless_and_exporter_rounds_with_dead_servers(
    ssh_server, node_exporter, silent_port, admin_user
):
    exp = _server("exp1", admin_user, address="127.0.0.1", ssh_port=1)
    ServerMonitor.objects.create(
        server=exp, method=ServerMonitor.Method.NODE_EXPORTER, exporter_url=node_exporter
    )
    closed = free_port(SSH_HOST)  # nothing listens: refused at once
    dead = _server("dead1", admin_user, address=SSH_HOST, ssh_port=closed, private_key="x")
    _server("hung1", admin_user, address=SSH_HOST, ssh_port=silent_port, private_key="x")
    held = _server("held1", admin_user, address=SSH_HOST, ssh_port=closed, private_key="x")
    Server.objects.filter(pk=held.pk).update(status=Server.Status.MAINTENANCE)

    first = collect_round()
    # The hung server costs its own timeout, in parallel with the others, no more.
    assert first.seconds < 2 + 3, first
    assert first.samples == 2 and set(first.failed) == {"dead1", "hung1", "held1"}
    web = Sample.objects.get(server=ssh_server)
    assert web.values["mem_total"] == _meminfo_total()  # the real /proc of this machine
    assert web.values["procs"] > 1 and web.values["uptime"] > 0 and web.values["load1"] >= 0
    assert web.values["disk_pct"] > 0 and web.detail["mounts"]
    assert "lo" in web.detail["interfaces"]
    assert "cpu" not in web.values  # CPU needs a previous round's counters
    exp_sample = Sample.objects.get(server=exp)
    assert exp_sample.values["mem_total"] == _meminfo_total()
    assert exp_sample.values["procs"] > 1 and exp_sample.values["disk_pct"] > 0
    statuses = dict(Server.objects.values_list("name", "status"))
    assert statuses["web1"] == statuses["exp1"] == "online"
    assert statuses["dead1"] == "unknown"  # one failed round is not offline yet

    # Exactly one round trip per server per round over the pooled connection.
    transport = connection.open_transport(ssh_server)
    trips = transport.round_trips
    second = collect_round()
    assert transport.round_trips == trips + 1
    assert second.samples == 2 and set(second.went_offline) == {"dead1", "hung1"}
    statuses = dict(Server.objects.values_list("name", "status"))
    assert statuses["dead1"] == statuses["hung1"] == "offline"
    assert statuses["held1"] == "maintenance"  # silenced: never changed by a round
    for server in (ssh_server, exp):
        latest = Sample.objects.filter(server=server).order_by("-at").first()
        assert 0 <= latest.values["cpu"] <= 100
        assert latest.values["net_rx"] >= 0 and latest.values["disk_read"] >= 0
    assert ServerMonitor.objects.get(server=dead).failures == 2
    # Every sample was announced on the live path, each with its server as key.
    keys = list(LiveEvent.objects.filter(topic=SAMPLE_TOPIC).values_list("key", flat=True))
    assert sorted(keys) == sorted([ssh_server.uuid.hex, exp.uuid.hex] * 2)


def test_an_offline_server_comes_back(ssh_server):
    Server.objects.filter(pk=ssh_server.pk).update(status=Server.Status.OFFLINE)
    result = collect_round()
    assert result.came_online == ["web1"]
    ssh_server.refresh_from_db()
    assert ssh_server.status == "online"


def test_script_takes_no_input_and_runs_in_one_command(ssh_server):
    transport = connection.open_transport(ssh_server, reuse=False)
    try:
        before = transport.round_trips
        reading = agentless.collect(transport, 5)
        assert transport.round_trips == before + 1
    finally:
        transport.close()
    assert {"cpu_total", "cpu_busy", "net_rx", "disk_read"} <= reading.counters.keys()
    assert "{" not in agentless.SCRIPT and "%" not in agentless.SCRIPT


def test_exporter_errors_are_retryable(node_exporter):
    dead_url = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(exporter.ExporterError) as err:
        exporter.scrape(dead_url, 2)
    assert err.value.retryable
    started = time.monotonic()
    reading = exporter.scrape(node_exporter, 5)
    assert time.monotonic() - started < 5
    assert reading.counters["cpu_total"] > reading.counters["cpu_busy"] >= 0
