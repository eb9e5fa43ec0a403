"""Run commands and move files on a server: over SSH (paramiko) or on this machine.

Commands are argv lists. Over SSH the argv is joined with ``shlex.join``, which quotes every
element, so nothing in it is ever interpreted by the remote shell. Every failure is a
``TransportError`` whose ``retryable`` says whether trying again can help.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import posixpath
import secrets
import shlex
import shutil
import socket
import subprocess
import threading
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
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def check(self) -> CommandResult:
        if self.code != 0:
            text = (self.stderr or self.stdout).strip() or f"exit code {self.code}"
            raise TransportError(f"{shlex.join(self.argv)} failed: {text}")
        return self


class Transport(ABC):
    @abstractmethod
    def run(
        self, argv: Sequence[str], *, timeout: float = 60, stdin: bytes | None = None
    ) -> CommandResult: ...

    @abstractmethod
    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None if it does not exist."""

    @abstractmethod
    def _put(self, tmp: str, data: bytes, mode: int) -> None: ...

    @abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src`` (same file system)."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Remove a file; a missing one is fine."""

    def close(self) -> None:  # noqa: B027 - optional for implementations
        pass

    def write_file(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        """Write beside the target, set mode and owner, then rename over it: never half a file."""
        directory, name = posixpath.split(path)
        tmp = posixpath.join(directory, f".{name}.panel-{secrets.token_hex(4)}")
        self._put(tmp, data, mode)
        try:
            if owner or group:
                self._chown(tmp, owner, group)
            self.rename(tmp, path)
        except Exception:
            self.remove(tmp)
            raise

    def _chown(self, path: str, owner: str | None, group: str | None) -> None:
        self.run(["chown", f"{owner or ''}:{group or ''}", "--", path]).check()

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        self.run(["mkdir", "-p", "-m", f"{mode:o}", "--", path]).check()


class LocalTransport(Transport):
    """The panel's own host."""

    def run(self, argv, *, timeout=60, stdin=None):
        argv = [str(a) for a in argv]
        try:
            proc = subprocess.run(
                argv, input=stdin, capture_output=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            raise TransportError(f"{argv[0]}: command not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise TransportError(
                f"{shlex.join(argv)} timed out after {timeout}s", retryable=True
            ) from exc
        return CommandResult(
            argv,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def read_file(self, path):
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransportError(f"cannot read {path}: {exc}") from exc

    def _put(self, tmp, data, mode):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
        except OSError as exc:
            raise TransportError(f"cannot write {tmp}: {exc}") from exc

    def rename(self, src, dst):
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise TransportError(f"cannot rename {src} to {dst}: {exc}") from exc

    def remove(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(path)
        except OSError as exc:
            raise TransportError(f"cannot remove {path}: {exc}") from exc


SockFactory = Callable[[], socket.socket]


class SSHTransport(Transport):
    """One authenticated SSH connection, with SFTP for files and a keepalive."""

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
        self._lock = threading.Lock()
        self._sftp: paramiko.SFTPClient | None = None
        self._ids: dict[tuple[str, str], int] = {}
        try:
            sock = (
                sock_factory()
                if sock_factory
                else socket.create_connection((host, port), timeout=timeout)
            )
        except OSError as exc:
            raise TransportError(f"cannot reach {host}:{port}: {exc}", retryable=True) from exc
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

    def run(self, argv, *, timeout=60, stdin=None):
        argv = [str(a) for a in argv]
        try:
            chan = self._t.open_session(timeout=self.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(
                f"SSH session to {self.host} failed: {exc}", retryable=True
            ) from exc
        with chan:
            chan.settimeout(1.0)
            chan.exec_command(shlex.join(argv))
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not (chan.recv_stderr_ready())
                ):
                    break
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"{shlex.join(argv)} timed out after {timeout}s on {self.host}",
                        retryable=True,
                    )
                time.sleep(0.005)
            code = chan.recv_exit_status()
        return CommandResult(argv, code, out.decode(errors="replace"), err.decode(errors="replace"))

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

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is None:
                self._sftp = self._t.open_sftp_client()
            return self._sftp

    def read_file(self, path):
        try:
            with self.sftp().open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransportError(f"cannot read {path} on {self.host}: {exc}") from exc

    def _put(self, tmp, data, mode):
        try:
            sftp = self.sftp()
            sftp.putfo(io.BytesIO(data), tmp, confirm=False)
            sftp.chmod(tmp, mode)
        except OSError as exc:
            raise TransportError(f"cannot write {tmp} on {self.host}: {exc}") from exc

    def _chown(self, path, owner, group):
        # Over SFTP with numeric ids looked up once per name: no command per file.
        uid = self._id("user", owner) if owner else -1
        gid = self._id("group", group) if group else -1
        try:
            self.sftp().chown(path, uid, gid)
        except OSError as exc:
            raise TransportError(f"cannot chown {path} on {self.host}: {exc}") from exc

    def _id(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._ids:
            argv = ["id", "-u", "--", name] if kind == "user" else ["getent", "group", name]
            out = self.run(argv, timeout=20).check().stdout.strip()
            self._ids[key] = int(out if kind == "user" else out.split(":")[2])
        return self._ids[key]

    def rename(self, src, dst):
        try:
            self.sftp().posix_rename(src, dst)
        except OSError as exc:
            raise TransportError(f"cannot rename {src} on {self.host}: {exc}") from exc

    def remove(self, path):
        try:
            self.sftp().remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TransportError(f"cannot remove {path} on {self.host}: {exc}") from exc


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
    digest = hashlib.sha256(base64.b64decode(parts[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
