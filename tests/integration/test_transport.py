import pytest

from core.models import Operation
from servers import connection, facts, services
from servers.models import Server
from servers.transport import LocalTransport, SSHTransport, TransportError, fingerprint
from tests.conftest import login
from tests.integration.conftest import SSH_HOST

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def ssh(sshd):
    t = SSHTransport(SSH_HOST, sshd.port, "root", private_key=sshd.private_key)
    yield t
    t.close()


@pytest.mark.parametrize("kind", ["ssh", "local"])
def test_commands_and_files(kind, request, tmp_path):
    t = request.getfixturevalue("ssh") if kind == "ssh" else LocalTransport()
    res = t.run(["printf", "%s|", "a b", "$(id)", ";rm -rf /"])
    assert res.ok and res.stdout == "a b|$(id)|;rm -rf /|"  # argv is never shell-interpreted
    assert t.run(["cat"], stdin=b"piped").stdout == "piped"
    bad = t.run(["ls", "/definitely/missing"])
    assert bad.code != 0 and "missing" in bad.stderr
    with pytest.raises(TransportError, match="failed"):
        bad.check()
    path = str(tmp_path / "f.conf")
    t.write_file(path, b"one", mode=0o640, owner="root", group="root")
    assert t.read_file(path) == b"one"
    assert t.run(["stat", "-c", "%a %U", path]).stdout.strip() == "640 root"
    t.write_file(path, b"two")
    assert t.read_file(path) == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.conf"]  # no temp file left behind
    t.remove(path)
    t.remove(path)
    assert t.read_file(path) is None


def test_commands_are_not_held_back_by_nagle(ssh):
    """Channel open, exec, EOF and close are small packets sent back to back: with Nagle's
    algorithm each waited for the server's delayed ACK (~45 ms a command)."""
    import socket

    assert ssh._t.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


@pytest.mark.parametrize("kind", ["ssh", "local"])
def test_a_command_that_does_not_read_its_input_still_answers(kind, request):
    """A command may exit before taking its input (account.sh's `site` for a site that
    exists): its status and words come back, and the connection stays usable."""
    import os

    t = request.getfixturevalue("ssh") if kind == "ssh" else LocalTransport()
    data = os.urandom(4 << 20)  # past the SSH window: the writer meets the closed channel
    for _ in range(3):
        res = t.run(["sh", "-c", "echo early; exit 3"], stdin=data)
        assert (res.code, res.stdout) == (3, "early\n")
    assert t.run(["cat"], stdin=b"still here").stdout == "still here"


def test_timeout_is_retryable(ssh):
    with pytest.raises(TransportError) as err:
        ssh.run(["sleep", "5"], timeout=0.5)
    assert err.value.retryable


def test_unreachable_is_retryable(db):
    with pytest.raises(TransportError) as err:
        SSHTransport("127.0.0.2", 1, "root", private_key="x", timeout=2)
    assert err.value.retryable


def test_host_key_pinned_then_mismatch_refused_until_accepted(ssh_server, sshd, admin_user):
    assert ssh_server.host_key == ""
    connection.open_transport(ssh_server, reuse=False).close()
    ssh_server.refresh_from_db()
    assert ssh_server.host_key == sshd.host_key_line()
    assert ssh_server.status == Server.Status.ONLINE and ssh_server.panel_address == "127.0.0.1"
    assert ssh_server.panel_ssh_port == sshd.port  # as the server sees it ($SSH_CONNECTION)
    real = ssh_server.host_key
    Server.objects.filter(pk=ssh_server.pk).update(
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBaRJNa0aBTA9ybR3VJfQNs0ryE3Uq2Bo3RHpNuqMBRa"
    )
    ssh_server.refresh_from_db()
    with pytest.raises(TransportError, match="host key .* changed") as err:
        connection.open_transport(ssh_server, reuse=False)
    assert not err.value.retryable
    ssh_server.refresh_from_db()
    assert ssh_server.pending_host_key == real
    page = login(admin_user).get(f"/servers/{ssh_server.uuid}/")
    assert fingerprint(real).encode() in page.content
    services.do_accept_host_key(ssh_server, actor=admin_user)
    ssh_server.refresh_from_db()
    assert ssh_server.host_key == real and ssh_server.pending_host_key == ""
    connection.open_transport(ssh_server, reuse=False).close()


def test_connections_are_reused(ssh_server):
    a = connection.open_transport(ssh_server)
    b = connection.open_transport(ssh_server)
    assert a is b
    connection.forget(ssh_server)
    assert not a.active


def test_facts(ssh):
    found = facts.gather(ssh)
    assert found["distribution"] == "debian" and found["kernel"]
    assert found["cpu_count"] >= 1 and found["memory_bytes"] > 0
    assert any(d["mount"] == "/" for d in found["disks"])
    assert found["services"]["nginx"] is True
    assert "8.2" in found["php_versions"]
    assert found["systemd_running"] is False  # this machine has systemctl, no systemd


def test_operations_test_connection_and_facts(
    ssh_server, admin_user, q_sync, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        op1 = services.start_test_connection(ssh_server, actor=admin_user)
        op2 = services.start_gather_facts(ssh_server, actor=admin_user)
    op1.refresh_from_db()
    op2.refresh_from_db()
    assert op1.state == "succeeded" and op1.message == "Connected as root", op1.error
    assert op2.state == "succeeded", op2.error
    assert op1.lines.filter(message__startswith="Host key SHA256:").exists()
    ssh_server.refresh_from_db()
    assert ssh_server.facts["distribution"] == "debian"
    assert op1.lines.filter(message__contains="kernel").exists()  # facts on connect too
    page = login(admin_user).get(f"/servers/{ssh_server.uuid}/")
    assert ssh_server.facts["kernel"].encode() in page.content


def test_failed_connection_fails_the_operation(
    ssh_server, admin_user, q_sync, django_capture_on_commit_callbacks
):
    Server.objects.filter(pk=ssh_server.pk).update(ssh_port=1)
    ssh_server.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        op = services.start_test_connection(ssh_server, actor=admin_user)
    op = Operation.objects.get(pk=op.pk)
    assert op.state == "failed" and "cannot reach" in op.error
    ssh_server.refresh_from_db()
    assert ssh_server.status == Server.Status.OFFLINE
