"""Run commands and move files on a server: over SSH (paramiko) or on this machine.

Commands are argv lists. Over SSH the argv is joined with ``shlex.join``, which quotes every
element, so nothing in it is ever interpreted by the remote shell. Every failure is a
``TransportError`` whose ``retryable`` says whether trying again can help.

Every call is one round trip (``round_trips`` counts them): a command reads stdout and stderr
to the end of the channel, a file is written by one command that streams it from stdin,
checks its size, fsyncs it and renames it into place, so a write that did not land whole is
an error with the system's own words (``No space left on device``), never a silent success.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import secrets
import select
import shlex
import shutil
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class TransportError(Exception):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ConnectionLost(TransportError):
    """The connection broke while a command ran: its outcome on the server is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class HostKeyMismatch(TransportError):
    def __init__(self, host: str, expected: str, offered: str) -> None:
        super().__init__(
            f"The host key of {host} changed (expected {fingerprint(expected)}, offered "
            f"{fingerprint(offered)}). Connections are refused until an administrator "
            "accepts the new key.",
            retryable=False,
        )
        self.offered = offered


@dataclass
class CommandResult:
    argv: list[str]
    code: int
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode(errors="replace")

    @property
    def ok(self) -> bool:
        return self.code == 0

    def check(self) -> CommandResult:
        if self.code != 0:
            text = (self.stderr or self.stdout).strip() or f"exit code {self.code}"
            raise TransportError(f"{_short(self.argv)} failed: {text}")
        return self


def _short(argv: Sequence[str]) -> str:
    """A command for messages: scripts passed to ``sh -c`` are not repeated in full."""
    if len(argv) >= 3 and argv[0] == "sh" and argv[1] == "-c":
        return shlex.join(["sh", "-c", "<script>", *argv[3:6]]) + (" ..." if len(argv) > 6 else "")
    text = shlex.join(argv)
    return text if len(text) < 300 else text[:300] + " ..."


# Writes stdin to a temporary file beside the target, checks that every byte landed, fsyncs,
# sets mode and owner, then renames it over the target. Constant text: data come as arguments.
WRITE_SCRIPT = r"""
set -u
path=$1 size=$2 mode=$3 owner=$4
tmp="$(dirname -- "$path")/.$(basename -- "$path").panel-$5"
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp" || exit 1
got=$(stat -c %s -- "$tmp") || exit 1
if [ "$got" != "$size" ]; then
  echo "wrote $got of $size bytes to $path" >&2; exit 1
fi
chmod "$mode" -- "$tmp" || exit 1
if [ -n "$owner" ]; then chown -- "$owner" "$tmp" || exit 1; fi
sync -- "$tmp" || exit 1
mv -f -- "$tmp" "$path" || exit 1
trap - EXIT
sync -- "$(dirname -- "$path")" 2>/dev/null || true
"""


class Transport(ABC):
    round_trips: int = 0

    @abstractmethod
    def run(
        self, argv: Sequence[str], *, timeout: float = 60, stdin: bytes | None = None
    ) -> CommandResult: ...

    def close(self) -> None:  # noqa: B027 - optional for implementations
        pass

    def stream_lines(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        on_line: Callable[[str], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run ``argv`` and hand each line of its output to ``on_line`` as it comes, until
        it ends, ``timeout`` passes or ``should_stop()`` says so (asked about every second);
        then its stdin is closed (a command can watch it to end itself). This fallback
        only hands over the lines once the command has ended."""
        for line in self.run(argv, timeout=timeout).stdout.splitlines():
            on_line(line)

    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None if it does not exist."""
        res = self.run(["cat", "--", path], timeout=120)
        if res.ok:
            return res.stdout_bytes
        if "No such file or directory" in res.stderr:
            return None
        raise TransportError(f"cannot read {path}: {res.stderr.strip()}")

    def write_file(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        """Write beside the target, confirm size, fsync, set mode and owner, rename over it."""
        ownership = f"{owner or ''}:{group or ''}" if (owner or group) else ""
        argv = [
            "sh",
            "-c",
            WRITE_SCRIPT,
            "write",
            path,
            str(len(data)),
            f"{mode:o}",
            ownership,
            secrets.token_hex(4),
        ]
        res = self.run(argv, stdin=data, timeout=120)
        if not res.ok:
            raise TransportError(f"cannot write {path}: {(res.stderr or res.stdout).strip()}")

    def remove(self, path: str) -> None:
        """Remove a file; a missing one is fine."""
        self.run(["rm", "-f", "--", path]).check()

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        self.run(["mkdir", "-p", "-m", f"{mode:o}", "--", path]).check()


class LocalTransport(Transport):
    """The panel's own host."""

    def run(self, argv, *, timeout=60, stdin=None):
        argv = [str(a) for a in argv]
        self.round_trips += 1
        try:
            proc = subprocess.run(
                argv, input=stdin or b"", capture_output=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            raise TransportError(f"{argv[0]}: command not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise TransportError(
                f"{_short(argv)} timed out after {timeout}s", retryable=True
            ) from exc
        return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)

    def read_file(self, path):
        self.round_trips += 1
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransportError(f"cannot read {path}: {exc}") from exc

    def remove(self, path):
        self.round_trips += 1
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(path)
        except OSError as exc:
            raise TransportError(f"cannot remove {path}: {exc}") from exc


SockFactory = Callable[[], socket.socket]


def _send_input(chan, data: bytes) -> None:
    """Write a command's input. A command may finish without reading it (``account.sh site``
    for a site that exists): the channel is then closed with an exit status, and that status
    and the command's words are the answer, not the unsent bytes."""
    try:
        chan.sendall(data)
    except OSError:
        if not (chan.closed and chan.exit_status_ready()):
            raise


class SSHTransport(Transport):
    """One authenticated SSH connection, with a keepalive."""

    def __init__(
        self,
        host: str,
        port: int = 22,
        user: str = "root",
        *,
        private_key: str = "",
        password: str = "",
        known_host_key: str = "",
        timeout: float = 10,
        sock_factory: SockFactory | None = None,
    ) -> None:
        self.host, self.port, self.user = host, port, user
        self.timeout = timeout
        self.round_trips = 0
        try:
            sock = (
                sock_factory()
                if sock_factory
                else socket.create_connection((host, port), timeout=timeout)
            )
        except OSError as exc:
            raise TransportError(f"cannot reach {host}:{port}: {exc}", retryable=True) from exc
        # Each command is a few small packets (channel open, exec, EOF, close) sent before
        # the last one is acknowledged: with Nagle's algorithm each waited for the
        # server's delayed ACK (40 ms), ~45 ms a command instead of ~5 ms.
        with contextlib.suppress(OSError):  # a socket of another family (tests) has none
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._t = paramiko.Transport(sock)
            self._t.start_client(timeout=timeout)
            offered = self._t.get_remote_server_key()
            self.host_key = f"{offered.get_name()} {offered.get_base64()}"
            if known_host_key and known_host_key.split()[:2] != self.host_key.split():
                raise HostKeyMismatch(host, known_host_key, self.host_key)
            if private_key:
                self._t.auth_publickey(user, load_private_key(private_key))
            elif password:
                self._t.auth_password(user, password)
            else:
                raise TransportError("no SSH key or password configured for this server")
            self._t.set_keepalive(30)
            self.local_address = self._t.sock.getsockname()[0]
        except TransportError:
            self._t.close()
            raise
        except paramiko.AuthenticationException as exc:
            self._t.close()
            raise TransportError(f"authentication as {user} on {host} failed") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._t.close()
            raise TransportError(f"SSH to {host}:{port} failed: {exc}", retryable=True) from exc

    @property
    def active(self) -> bool:
        return self._t.is_active()

    def close(self):
        self._t.close()

    def drop(self) -> None:
        """Break the connection as a network fault would (tests use it to inject faults)."""
        with contextlib.suppress(OSError):
            self._t.sock.shutdown(socket.SHUT_RDWR)
        self._t.close()

    def run(self, argv, *, timeout=60, stdin=None):
        argv = [str(a) for a in argv]
        self.round_trips += 1
        try:
            chan = self._t.open_session(timeout=self.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(
                f"SSH session to {self.host} failed: {exc}", retryable=True
            ) from exc
        with chan:
            try:
                chan.exec_command(shlex.join(argv))
                if stdin:
                    _send_input(chan, stdin)
                if not chan.closed:
                    chan.shutdown_write()  # never on a closed channel: sshd would drop us
                out, err = _drain(chan, time.monotonic() + timeout)
            except TimeoutError:
                raise TransportError(
                    f"{_short(argv)} timed out after {timeout}s on {self.host}", retryable=True
                ) from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise ConnectionLost(
                    f"the connection to {self.host} broke during {_short(argv)}: {exc}"
                ) from exc
            if not chan.exit_status_ready():
                raise ConnectionLost(
                    f"the connection to {self.host} closed before {_short(argv)} finished"
                )
            code = chan.recv_exit_status()
        return CommandResult(argv, code, bytes(out), bytes(err))

    def stream_lines(self, argv, *, timeout, on_line, should_stop=lambda: False):
        argv = [str(a) for a in argv]
        self.round_trips += 1
        try:
            chan = self._t.open_session(timeout=self.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(
                f"SSH session to {self.host} failed: {exc}", retryable=True
            ) from exc
        deadline = time.monotonic() + timeout
        buffer = b""
        with chan:
            try:
                chan.exec_command(shlex.join(argv))
                chan.set_combine_stderr(True)
                while time.monotonic() < deadline and not should_stop():
                    select.select([chan], [], [], 1.0)
                    while chan.recv_ready():
                        buffer += chan.recv(1 << 16)
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        on_line(line.decode(errors="replace"))
                    # First: a closed channel also says its exit status is "ready".
                    if not chan.get_transport() or not chan.get_transport().is_active():
                        raise EOFError("transport closed")
                    if chan.exit_status_ready() and not chan.recv_ready():
                        break
                while chan.recv_ready():
                    buffer += chan.recv(1 << 16)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise ConnectionLost(
                    f"the connection to {self.host} broke during {_short(argv)}: {exc}"
                ) from exc
        for line in buffer.split(b"\n"):
            if line:
                on_line(line.decode(errors="replace"))

    def open_shell(self, cols: int = 80, rows: int = 24) -> paramiko.Channel:
        """An interactive login shell on a pty (for the web terminal)."""
        try:
            chan = self._t.open_session(timeout=self.timeout)
            chan.get_pty(term="xterm-256color", width=cols, height=rows)
            chan.invoke_shell()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(
                f"cannot open a shell on {self.host}: {exc}", retryable=True
            ) from exc
        return chan

    def open_tunnel(self, host: str, port: int) -> paramiko.Channel:
        """A direct-tcpip channel to ``host:port`` as seen from the server (a VPS's VNC
        screen, bound to the hypervisor's loopback)."""
        try:
            return self._t.open_channel(
                "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=self.timeout
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(
                f"cannot reach {host}:{port} through {self.host}: {exc}", retryable=True
            ) from exc


def _drain(chan: paramiko.Channel, deadline: float) -> tuple[bytearray, bytearray]:
    """Read stdout and stderr until the server closes the channel.

    The exit status may arrive before the last output does, so it is never the signal to
    stop: only the channel's close is (after which both buffers hold everything sent).
    """
    out, err = bytearray(), bytearray()
    while True:
        while chan.recv_ready():
            out += chan.recv(1 << 16)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(1 << 16)
        if chan.closed or (chan.eof_received and chan.exit_status_ready() and _quiet(chan)):
            break
        if not chan.get_transport() or not chan.get_transport().is_active():
            raise EOFError("transport closed")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        select.select([chan], [], [], min(left, 1.0))
    while chan.recv_ready():
        out += chan.recv(1 << 16)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(1 << 16)
    return out, err


def _quiet(chan: paramiko.Channel) -> bool:
    """EOF and exit status are in and no data is buffered; wait briefly for the close."""
    if chan.recv_ready() or chan.recv_stderr_ready():
        return False
    end = time.monotonic() + 2.0
    while not chan.closed and time.monotonic() < end:
        if chan.recv_ready() or chan.recv_stderr_ready():
            return False
        select.select([chan], [], [], 0.05)
    return not (chan.recv_ready() or chan.recv_stderr_ready())


def load_private_key(text: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise TransportError(
        "the stored private key is not an OpenSSH/PEM ed25519, ECDSA or "
        "RSA key (or it is encrypted)"
    )


def generate_keypair(comment: str) -> tuple[str, str]:
    """A new ed25519 key: (private key in OpenSSH format, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, f"{public} {comment}"


def public_key_of(private_key: str) -> str:
    pkey = load_private_key(private_key)
    return f"{pkey.get_name()} {pkey.get_base64()}"


def fingerprint(key_line: str) -> str:
    """OpenSSH-style SHA256 fingerprint of a 'type base64' key line."""
    parts = (key_line or "").split()
    if len(parts) < 2:
        return ""
    try:
        digest = hashlib.sha256(base64.b64decode(parts[1])).digest()
    except ValueError:
        return ""
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
