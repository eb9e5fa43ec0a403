"""The panel as deployed for scale-out, started from this checkout: N web processes (runweb)
and M workers (qcluster) on PostgreSQL and Redis, behind a private nginx running the shipped
site (deploy/nginx/panel.conf.in rendered by deploy/install-debian.sh) over TLS.

Used by tests/integration/test_scale_out.py (once per module) and bench/load.py. Nothing here
touches the test process's own database: the cluster has a database of its own, cloned from a
migrated template kept between runs (keyed by the migration files, so a new migration makes a
new template), a Redis key prefix and task queue of its own, and its own var directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
NGINX = "/usr/sbin/nginx"
PASSWORD = "correct horse battery staple"
FERNET_KEY = "8rK3bTz3W0Hk1pVx0fYb3cFvHqYp9yq0Zl5H6mB2T3Q="


class Unavailable(Exception):
    """PostgreSQL, Redis or nginx is not there: the caller skips (or fails under CI)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, seconds: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(step)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_server() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/postgres"))


def migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("**/migrations/0*.py")):
        if ".venv" not in path.parts:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class Cluster:
    def __init__(
        self,
        base: Path,
        *,
        webs: int = 2,
        workers: int = 2,
        static_dir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.extra_env = extra_env or {}
        self.tag = secrets.token_hex(4)
        self.db_name = f"uhp_cluster_{self.tag}"
        self.web_ports = [free_port() for _ in range(webs)]
        self.worker_count = workers
        self.https_port, self.http_port = free_port(), free_port()
        self.var = base / "var"
        self.static_dir = static_dir
        self.logs = base / "logs"
        self.webs: dict[int, subprocess.Popen] = {}
        self.workers: dict[int, subprocess.Popen] = {}
        self.nginx_prefix = base / "nginx"
        self.admin = None  # the pg admin connection string
        self.env: dict[str, str] = {}

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Cluster:
        for path in (self.var, self.logs, self.nginx_prefix):
            path.mkdir(parents=True, exist_ok=True)
        self._database()
        self._environment()
        self.manage("upgrade", "--no-restart")  # migrations (none left) + static files
        for port in self.web_ports:
            self.start_web(port)
        for n in range(1, self.worker_count + 1):
            self.start_worker(n)
        self._nginx()
        for port in self.web_ports:
            wait_until(lambda port=port: self.ready(port), 60, f"web on {port} not ready")
        for n in self.workers:
            wait_until(lambda n=n: self.worker_running(n), 60, f"worker {n} did not start")
        return self

    def stop(self) -> None:
        """Stop everything this started (also after a start that failed half-way)."""
        # SIGTERM to each main process only, as systemd (KillMode=mixed) does: a cluster
        # whose task processes got it too would wait for children that died under it.
        for proc in [*self.webs.values(), *self.workers.values()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        for proc in [*self.webs.values(), *self.workers.values()]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # and whatever it left behind
            proc.wait(5)
        subprocess.run(
            [NGINX, "-p", f"{self.nginx_prefix}/", "-c", "conf/nginx.conf", "-s", "stop"],
            capture_output=True,
        )
        if self.admin:
            with contextlib.suppress(Exception):
                self._psql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            self._flush_redis()

    # --- pieces --------------------------------------------------------------------------

    def _psql(self, sql: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.admin, dbname=dbname, autocommit=True) as conn:
            conn.execute(sql)

    def _database(self) -> None:
        import psycopg

        self.admin = postgres_server()
        try:
            with psycopg.connect(self.admin, autocommit=True, connect_timeout=3) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", [self._template()]
                ).fetchone()
        except psycopg.OperationalError as exc:
            raise Unavailable(f"PostgreSQL at {self.admin}: {exc}") from exc
        if not exists:
            # Migrate a scratch database and rename it: another process building the same
            # template at once loses the rename, not a half-migrated template.
            scratch = f"uhp_cluster_build_{self.tag}"
            self._psql(f'CREATE DATABASE "{scratch}"')
            self._run_manage(["migrate", "-v0"], self._env_for(scratch))
            try:
                self._psql(f'ALTER DATABASE "{scratch}" RENAME TO "{self._template()}"')
            except psycopg.errors.DuplicateDatabase:
                self._psql(f'DROP DATABASE "{scratch}"')
            self._drop_old_templates()
        self._psql(f'CREATE DATABASE "{self.db_name}" TEMPLATE "{self._template()}"')

    def _drop_old_templates(self) -> None:
        """Templates of earlier migration sets are of no more use (one in use is kept)."""
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'uhp\\_cluster\\_tmpl\\_%'"
                )
            ]
        for name in names:
            if name != self._template():
                with contextlib.suppress(psycopg.Error):
                    self._psql(f'DROP DATABASE "{name}"')

    def _template(self) -> str:
        return f"uhp_cluster_tmpl_{migrations_digest()}"

    def _redis_url(self) -> str:
        return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"

    def _flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self._redis_url())
        keys = list(client.scan_iter(f"*{self.tag}*"))
        if keys:
            client.delete(*keys)

    def _env_for(self, db_name: str) -> dict[str, str]:
        parts = urllib.parse.urlsplit(self.admin)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "REDIS_", "PANEL_", "PYTEST_", "DJANGO_"))
        }
        env.update(
            DATABASE_URL=urllib.parse.urlunsplit(parts._replace(path=f"/{db_name}")),
            REDIS_URL=self._redis_url(),
            PANEL_REDIS_PREFIX=f"uhp-cluster-{self.tag}",
            PANEL_Q_NAME=f"cluster-{self.tag}",
            PANEL_VAR_DIR=str(self.var),
            PANEL_AUDIT_WITNESS_FILE=str(self.var / "audit-head.log"),
            SECRET_KEY="cluster-secret-key-not-for-production-0123456789abcdef",
            PANEL_ENCRYPTION_KEYS=FERNET_KEY,
            PANEL_AUDIT_KEYS="cluster-audit-key-0123456789abcdef0123456789",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            PANEL_BEHIND_PROXY="1",
            PANEL_DEBUG="0",
            PANEL_SECURE="1",
            PANEL_LOG_LEVEL="WARNING",
            PANEL_WORKERS="2",
            # A dead worker is noticed within seconds, not a minute.
            PANEL_HEARTBEAT_SECONDS="1",
            PANEL_OPERATION_STALE_SECONDS="4",
            # Many clients share one account and one address in tests and the benchmark.
            PANEL_API_USER_RATE="1000000/minute",
            PANEL_API_ANON_RATE="1000000/minute",
            PANEL_LOGIN_FAILURE_LIMIT="1000",
            PANEL_ACME_AUTO="0",
            EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
            PYTHONUNBUFFERED="1",
        )
        return env

    def _environment(self) -> None:
        import redis

        try:
            redis.Redis.from_url(self._redis_url(), socket_timeout=3).ping()
        except redis.RedisError as exc:
            raise Unavailable(f"Redis at {self._redis_url()}: {exc}") from exc
        self.env = {**self._env_for(self.db_name), **self.extra_env}
        # Static files are kept between runs (collectstatic copies only what changed).
        self.static_dir.mkdir(parents=True, exist_ok=True)
        link = self.var / "staticfiles"
        if not link.exists():
            link.symlink_to(self.static_dir)

    def _run_manage(self, args: list[str], env: dict[str, str]) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)}: {done.stderr[-3000:]}")
        return done.stdout

    def manage(self, *args: str) -> str:
        return self._run_manage(list(args), self.env)

    def shell(self, code: str):
        """Run Python in the cluster's environment; its last stdout line, parsed as JSON."""
        out = self.manage("shell", "-c", code)
        return json.loads(out.strip().splitlines()[-1])

    def _popen(self, argv: list[str], log_name: str, **extra: str) -> subprocess.Popen:
        log = open(self.logs / log_name, "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_web(self, port: int) -> subprocess.Popen:
        pidfile = self.var / f"web-{port}.pid"
        argv = [PYTHON, "manage.py", "runweb", "--port", str(port), "--pidfile", str(pidfile)]
        # A bounded connection pool per web process, as the systemd unit sets it.
        self.webs[port] = self._popen(argv, f"web-{port}.log", PANEL_DB_POOL_SIZE="8")
        return self.webs[port]

    def start_worker(self, n: int) -> subprocess.Popen:
        pidfile = self.var / f"worker-{n}.pid"
        argv = [PYTHON, "manage.py", "qcluster", "--pidfile", str(pidfile)]
        self.workers[n] = self._popen(argv, f"worker-{n}.log")
        return self.workers[n]

    def worker_running(self, n: int) -> bool:
        """Its cluster runs (it writes its pid file once started)."""
        pidfile = self.var / f"worker-{n}.pid"
        return pidfile.exists() and pidfile.read_text().strip() == str(self.workers[n].pid)

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Rows from the cluster's own database (what the API does not show: which worker
        holds what)."""
        import psycopg

        with psycopg.connect(self.admin, dbname=self.db_name, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def ready(self, port: int) -> bool:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/healthz/ready", headers={"Host": "127.0.0.1"})
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def _nginx(self) -> None:
        if not Path(NGINX).exists():
            raise Unavailable(f"{NGINX} is not installed")
        etc = self.base / "etc"
        (etc / "tls").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(etc / "tls" / "panel.key"), "-out", str(etc / "tls" / "panel.crt")],
            check=True, capture_output=True,
        )  # fmt: skip
        site = self.nginx_prefix / "panel.conf"
        env = {
            **os.environ,
            "PANEL_DOMAIN": "127.0.0.1",
            "PANEL_WEB_UPSTREAMS": " ".join(f"127.0.0.1:{p}" for p in self.web_ports),
            "PANEL_ETC": str(etc),
            "PANEL_STATE": str(self.var),
            "NGINX_SITE": str(site),
            "HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "HTTPS_LISTEN": f"127.0.0.1:{self.https_port}",
        }
        subprocess.run(
            ["bash", str(ROOT / "deploy" / "install-debian.sh"), "--render-nginx"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        p = self.nginx_prefix
        (p / "conf").mkdir(exist_ok=True)
        (p / "logs").mkdir(exist_ok=True)
        (p / "conf" / "nginx.conf").write_text(
            f"worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\n"
            "events { worker_connections 4096; }\n"
            f"http {{\n include /etc/nginx/mime.types;\n access_log off;\n"
            f" client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n"
            f" include {site};\n}}\n"
        )
        # nginx's workers run as nobody here: they must read the static files.
        for path in (self.base, self.var, self.static_dir):
            path.chmod(0o755)
        subprocess.run([NGINX, "-p", f"{p}/", "-c", "conf/nginx.conf"], check=True)
        wait_until(lambda: port_open(self.https_port), 10, "nginx did not start")

    # --- helpers for tests ---------------------------------------------------------------

    @property
    def ca(self) -> str:
        """The certificate nginx serves (self-signed for 127.0.0.1): trust it to verify."""
        return str(self.base / "etc" / "tls" / "panel.crt")

    def session(self):
        """A requests session for the cluster: its certificate verified, and nothing from
        the environment (proxies, another CA bundle) in the way."""
        import requests

        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca
        return s

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ws_url(self, path: str, *, port: int | None = None) -> str:
        """Through nginx (wss) or straight to one web process (ws)."""
        if port is None:
            return f"wss://127.0.0.1:{self.https_port}{path}"
        return f"ws://127.0.0.1:{port}{path}"

    def cpu_seconds(self, pids: list[int]) -> float:
        """User + system CPU time of these processes, from /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick
