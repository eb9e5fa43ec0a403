"""The shipped units' commands, run as the units say: ExecStart (with %i), User/Group,
WorkingDirectory, EnvironmentFile and Environment are read from deploy/systemd/*.service and
the command runs as that user, in that directory, with exactly that environment, on the
layout deploy/install-debian.sh makes (/opt/panel/app, a virtualenv of Debian's python3 in
/opt/panel/venv, /etc/panel/panel.env mode 0600, user panel, /var/lib/panel). It then serves
(web: /healthz/ready; worker: registers and runs an operation) and stops cleanly on SIGTERM to
its main process (KillMode=mixed).

Not run here: systemd itself. This machine's PID 1 is not systemd, and booting one in a
namespace runs the distribution's early-boot units against the machine's shared filesystems
(systemd-tmpfiles empties /tmp at boot), so the sandboxing options (ProtectSystem, PrivateTmp
...) are checked by `systemd-analyze verify` only (test_deploy_artefacts.py). The layout is made
in a private mount namespace (overlays on /etc, /opt and /var/lib): the machine is untouched.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from tests.cluster import Cluster, Unavailable, free_port, wait_until
from tests.conftest import require_real

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
# What the service's environment holds besides the env file (systemd sets these itself).
SYSTEMD_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


def parse_unit(path: Path, instance: str = "") -> dict[str, list[str]]:
    """[Service] keys of a unit file, each with every value it was given, %i expanded."""
    section, keys = "", {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if section == "Service":
            keys.setdefault(key.strip(), []).append(value.strip().replace("%i", instance))
    return keys


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


class Layout:
    """/opt/panel, /etc/panel and /var/lib/panel as the install script makes them, in a mount
    namespace of their own; ``run(unit)`` starts a unit's ExecStart there."""

    def __init__(self, base: Path, venv: Path, panel_env: dict[str, str]) -> None:
        self.base, self.venv, self.panel_env = base, venv, panel_env
        self.procs: list[subprocess.Popen] = []

    def run(self, unit: str, instance: str = "") -> subprocess.Popen:
        keys = parse_unit(UNITS / unit, instance)
        (exec_start,) = keys["ExecStart"]
        (user,), (group,) = keys["User"], keys["Group"]
        (workdir,), (envfile,) = keys["WorkingDirectory"], keys["EnvironmentFile"]
        environment = dict(SYSTEMD_ENV)
        for assignment in keys.get("Environment", []):
            for pair in shlex.split(assignment):
                name, _, value = pair.partition("=")
                environment[name] = value
        # EnvironmentFile= comes after Environment= (it overrides it), as in systemd.
        setup = textwrap.dedent(
            f"""
            set -eu
            b={self.base}
            for dir in /etc /opt /var/lib; do
                name=$(echo "$dir" | tr / _)
                mkdir -p "$b/$name.up" "$b/$name.work"
                mount -t overlay overlay \\
                    -o "lowerdir=$dir,upperdir=$b/$name.up,workdir=$b/$name.work" "$dir"
            done
            id {user} >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/panel \\
                --shell /usr/sbin/nologin {user}
            mkdir -p /opt/panel/app /opt/panel/venv "$(dirname {envfile})"
            mount --bind {ROOT} /opt/panel/app
            mount --bind {self.venv} /opt/panel/venv
            install -m 0600 -o {user} -g {group} {self.base}/panel.env {envfile}
            # StateDirectory=panel
            install -d -m 0755 -o {user} -g {group} /var/lib/panel
            cd {workdir}
            exec setpriv --reuid={user} --regid={group} --init-groups --reset-env \\
                env -i {" ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())} \\
                sh -c 'set -a; . {envfile}; set +a; exec "$@"' - {exec_start}
            """
        )
        (self.base / "panel.env").write_text(
            "".join(f"{k}={v}\n" for k, v in self.panel_env.items())
        )
        log = open(self.base / f"{unit}{instance}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--fork", "bash", "-c", setup],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def log(self, unit: str, instance: str = "") -> str:
        return (self.base / f"{unit}{instance}.log").read_text()[-3000:]

    @staticmethod
    def main_pid(proc: subprocess.Popen) -> int:
        """The unit's main process (unshare's only child): KillMode=mixed signals it alone."""
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        return int(children[0])

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def layout():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        require_real("needs root, unshare and setpriv")
    base = Path(tempfile.mkdtemp(prefix="uhp-units-"))
    base.chmod(0o755)
    venv = base / "venv"
    # A virtualenv of Debian's python3, as install-debian.sh makes: this checkout's venv lives
    # under /root, which panel may not read.
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "-q", "--python", "/usr/bin/python3", str(venv)], check=True)
    subprocess.run(
        [*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(ROOT)],
        check=True,
    )
    cluster = Cluster(base / "cluster", static_dir=Path(settings.VAR_DIR) / "cluster-static")
    try:
        cluster.var.mkdir(parents=True)
        cluster._database()
        cluster._environment()
    except Unavailable as exc:
        cluster.stop()
        require_real(str(exc))
    keep = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "EMAIL_BACKEND")
    panel_env = {k: v for k, v in cluster.env.items() if k in keep or k.startswith("PANEL_")}
    panel_env.update(PANEL_VAR_DIR="/var/lib/panel", PANEL_LOG_FORMAT="json", PANEL_WORKERS="1")
    panel_env.pop("PANEL_AUDIT_WITNESS_FILE", None)
    units = Layout(base, venv, panel_env)
    units.cluster = cluster
    try:
        yield units
    finally:
        units.stop()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz/ready", headers={"Host": "127.0.0.1"})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def test_units_have_no_reload_command():
    """Nothing to run for ExecReload: the panel reloads by restarting (manage.py upgrade)."""
    for unit in UNITS.glob("*.service"):
        assert "ExecReload" not in parse_unit(unit), unit.name


def test_web_unit_serves_as_panel_and_drains_on_sigterm(layout):
    port = free_port()
    proc = layout.run("panel-web@.service", str(port))
    wait_until(lambda: ready(port) or proc.poll() is not None, 90, "web not ready")
    assert proc.poll() is None, layout.log("panel-web@.service", str(port))
    main = layout.main_pid(proc)
    status = Path(f"/proc/{main}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid) != 0  # runs as panel, not root
    assert os.readlink(f"/proc/{main}/cwd") == "/opt/panel/app"
    os.kill(main, signal.SIGTERM)
    assert proc.wait(40) == 0, layout.log("panel-web@.service", str(port))


def test_worker_unit_registers_runs_an_operation_and_stops_cleanly(layout):
    cluster = layout.cluster
    proc = layout.run("panel-worker@.service", "1")
    main = wait_until(
        lambda: proc.poll() is not None or (_children(proc) and layout.main_pid(proc)), 30, "no"
    )
    assert proc.poll() is None, layout.log("panel-worker@.service", "1")
    wait_until(
        lambda: (
            cluster.sql("SELECT count(*) FROM core_worker WHERE pid = %s", (main,)) == [(1,)]
            or proc.poll() is not None
        ),
        90,
        "the worker never registered",
    )
    assert proc.poll() is None, layout.log("panel-worker@.service", "1")
    uuid = cluster.shell(
        "import json\n"
        "from accounts.models import Role, User\n"
        "from core.operations import start_operation\n"
        "u = User.objects.create_user('units@example.com', 'x' * 12, role=Role.ADMIN)\n"
        "op = start_operation(kind='panel.self_check', task='core.tasks.self_check', owner=u)\n"
        "print(json.dumps(str(op.uuid)))\n"
    )
    wait_until(
        lambda: (
            cluster.sql("SELECT state FROM core_operation WHERE uuid = %s", (uuid,))
            in ([("succeeded",)], [("failed",)])
        ),
        60,
        "the operation never ended",
    )
    rows = cluster.sql("SELECT state, error FROM core_operation WHERE uuid = %s", (uuid,))
    assert rows[0][0] == "succeeded", (rows, layout.log("panel-worker@.service", "1"))
    os.kill(main, signal.SIGTERM)
    assert proc.wait(60) == 0, layout.log("panel-worker@.service", "1")
    assert cluster.sql("SELECT count(*) FROM core_worker WHERE pid = %s", (main,)) == [(0,)]


def _children(proc: subprocess.Popen) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return []
