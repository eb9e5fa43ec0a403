"""Private instances of the real programs, on loopback, started and stopped by the tests.

sshd listens on 127.0.0.2 and lets the test key in as root; nginx serves on 127.0.0.1 from
its own prefix and includes the panel's managed vhost directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from servers.models import Server
from servers.transport import generate_keypair
from tests.conftest import require_real
from tests.integration.stripe_fixtures import (  # noqa: F401 - card payment fixtures
    invoice,
    standin,
    stripe_account,
)

SSH_HOST = "127.0.0.2"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def need(program: str) -> str:
    path = shutil.which(program) or (
        f"/usr/sbin/{program}" if os.path.exists(f"/usr/sbin/{program}") else None
    )
    if not path:
        require_real(f"{program} is not installed")
    return path


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A panel SQLite database that ``manage.py migrate`` made once for the whole run, for
    tests that start panel processes on var directories of their own: they copy it
    (copy_database) instead of migrating each from scratch (about 10 s of CPU each). The
    xdist workers of a run share it; the first to need it makes it, under a lock."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's directory, which its workers share
    var = base / "migrated-sqlite"
    with open(base / "migrated-sqlite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (var / "complete").exists():
            shutil.rmtree(var, ignore_errors=True)
            var.mkdir()
            env = {
                k: v
                for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "REDIS_URL", "PYTEST_XDIST_WORKER")
                and not k.startswith(("SECRET_KEY", "PANEL_ENCRYPTION_KEYS", "PANEL_AUDIT_KEYS"))
            }
            env.update(PANEL_VAR_DIR=str(var), PANEL_DEBUG="1")
            root = Path(__file__).resolve().parents[2]
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True
            )
            (var / "complete").touch()
    return var / "panel.sqlite3"


def copy_database(source: Path, var: Path) -> None:
    """The migrated database into ``var`` (the panel's key files are made there at start:
    the migrations store nothing encrypted or signed)."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(var / "panel.sqlite3")) as dst,
    ):
        src.backup(dst)


def stop_pidfile(pidfile: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
        os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


def world_readable_tmp(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class SSHD:
    def __init__(self, base: Path, host: str, port: int, private_key: str, public_key: str):
        self.base, self.host, self.port = base, host, port
        self.private_key, self.public_key = private_key, public_key
        self.host_key_file = base / "host_key"

    def host_key_line(self) -> str:
        return " ".join(Path(f"{self.host_key_file}.pub").read_text().split()[:2])


def start_sshd(base: Path, host: str, port: int, *, netns: str | None = None) -> SSHD:
    sshd = need("sshd")
    need("ssh-keygen")
    private, public = generate_keypair("panel-tests")
    # Sessions get an empty HOME of their own: bash, run by sshd, sources ~/.bashrc for every
    # command, and this machine's root .bashrc runs pyenv init (0.2 s a command). A managed
    # server's root shell does not; the tests and benchmarks should not pay for it either.
    (base / "home").mkdir(exist_ok=True)
    options = f'environment="HOME={base}/home" '
    (base / "authorized_keys").write_text(options + public + "\n")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True
    )
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress {host}\nHostKey {base}/host_key\n"
        f"PidFile {base}/sshd.pid\nAuthorizedKeysFile {base}/authorized_keys\n"
        "StrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n"
        "PermitUserEnvironment yes\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    argv = [sshd, "-f", str(base / "sshd_config"), "-E", str(base / "sshd.log")]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    subprocess.run(argv, check=True)
    return SSHD(base, host, port, private, public)


@pytest.fixture(scope="session")
def sshd():
    base = world_readable_tmp("uhp-sshd-")
    port = free_port(SSH_HOST)
    daemon = start_sshd(base, SSH_HOST, port)
    wait_port(SSH_HOST, port)
    yield daemon
    stop_pidfile(base / "sshd.pid")
    shutil.rmtree(base, ignore_errors=True)


class Nginx:
    def __init__(self, prefix: Path, port: int):
        self.prefix, self.port = prefix, port
        self.conf = prefix / "conf" / "nginx.conf"
        self.sites = prefix / "panel.d"
        self.www = prefix / "www"

    def cmd(self, *args: str) -> list[str]:
        return ["nginx", "-p", f"{self.prefix}/", "-c", str(self.conf), *args]

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"Host": host})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def wait_for(self, host: str, body: str, timeout: float = 5.0) -> None:
        """nginx -s reload returns before the new workers serve."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.get(host)[1] == body:
                return
            time.sleep(0.05)
        raise AssertionError(f"{host} never served {body!r}; last: {self.get(host)}")

    def wait_for_status(self, host: str, status: int, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.get(host)[0] == status:
                return
            time.sleep(0.05)
        raise AssertionError(f"{host} never answered {status}; last: {self.get(host)}")

    def profile(self) -> dict:
        return {
            "state_dir": str(self.prefix / "state"),
            "nginx_conf": str(self.conf),
            "nginx_sites_dir": str(self.sites),
            "nginx_listen": f"127.0.0.1:{self.port}",
            "nginx_test": ["nginx", "-t", "-q", "-p", f"{self.prefix}/", "-c", "{conf}"],
            "nginx_pid_file": str(self.prefix / "nginx.pid"),
            "nginx_error_log": str(self.prefix / "logs" / "error.log"),
            "webroot_base": str(self.www),
            # The engine's own tests count files: the catch-all is the websites tests' (they
            # set "panel", the default).
            "nginx_default_server": "own",
        }

    def page(self, domain: str, body: str, account: str) -> None:
        """An index page where the vhost of ``account``'s site ``domain`` looks."""
        home = self.www / account
        root = home / "sites" / domain / "public"
        root.mkdir(parents=True, exist_ok=True)
        for p in (self.www, home, home / "sites", home / "sites" / domain, root):
            p.chmod(0o755)
        (root / "index.html").write_text(body)
        (root / "index.html").chmod(0o644)


def start_nginx(prefix: Path) -> Nginx:
    """A private nginx under ``prefix``: a first server on a free port, plus the panel's
    managed vhost directory included from its http block."""
    need("nginx")
    port = free_port()
    for sub in ("conf", "panel.d", "logs", "tmp", "www"):
        (prefix / sub).mkdir(exist_ok=True)
    (prefix / "conf" / "nginx.conf").write_text(
        "worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/logs/error.log;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {prefix}/tmp/body; proxy_temp_path {prefix}/tmp/proxy;\n"
        f"  fastcgi_temp_path {prefix}/tmp/fcgi; uwsgi_temp_path {prefix}/tmp/uwsgi;\n"
        f"  scgi_temp_path {prefix}/tmp/scgi;\n"
        "  server_names_hash_bucket_size 128; server_names_hash_max_size 16384;\n"
        # The first server read: the default until the panel writes its own catch-all.
        f"  server {{ listen 127.0.0.1:{port}; return 404; }}\n"
        f"  include {prefix}/panel.d/*.conf;\n"
        "}\n"
    )
    daemon = Nginx(prefix, port)
    subprocess.run(daemon.cmd(), check=True)
    wait_port("127.0.0.1", port)
    return daemon


@pytest.fixture
def nginx():
    prefix = world_readable_tmp("uhp-nginx-")
    daemon = start_nginx(prefix)
    yield daemon
    stop_pidfile(prefix / "nginx.pid")
    time.sleep(0.1)
    shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture
def ssh_server(db, sshd, admin_user):
    """A Server row reaching the private sshd with a key, as root."""
    return Server.objects.create(
        name="web1",
        address=SSH_HOST,
        ssh_port=sshd.port,
        ssh_user="root",
        owner=admin_user,
        private_key=sshd.private_key,
        public_key=sshd.public_key,
    )


@pytest.fixture
def web_server(ssh_server, nginx):
    ssh_server.profile = nginx.profile()
    ssh_server.save()
    return ssh_server
