"""deploy/: what can be checked without a real server. The install script's files (env file,
TLS pair, nginx site, systemd units) are rendered into a scratch directory and checked by the
programs that will read them (nginx -t, systemd-analyze verify); the scripts pass
shellcheck; the compose file and the container image definition are parsed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from tests.conftest import require_real

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL = DEPLOY / "install-debian.sh"
pytestmark = pytest.mark.integration


def program(path: str) -> str:
    if not Path(path).exists():
        require_real(f"{path} is not installed (scripts/deps.sh)")
    return path


def render(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    paths = {
        "PANEL_ETC": str(tmp / "etc"),
        "PANEL_STATE": str(tmp / "state"),
        "PANEL_HOME": str(tmp / "home"),
        "NGINX_SITE": str(tmp / "nginx" / "panel.conf"),
        "SYSTEMD_DIR": str(tmp / "systemd"),
        "PANEL_DOMAIN": "panel.example.test",
        "PANEL_USER": "www-data",
        "HTTP_LISTEN": "127.0.0.1:18080",
        "HTTPS_LISTEN": "127.0.0.1:18443",
    }
    return subprocess.run(
        ["bash", str(INSTALL), *(args or ("--render",))],
        env={**os.environ, **paths, **env},
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("render")
    done = render(tmp)
    assert done.returncode == 0, done.stderr
    return tmp


def test_scripts_pass_shellcheck():
    shellcheck = program("/usr/bin/shellcheck")
    scripts = [str(INSTALL), str(DEPLOY / "compose-secrets.sh")]
    for script in scripts:
        assert subprocess.run(["bash", "-n", script]).returncode == 0
    done = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_env_file_is_private_to_the_panel_user_and_holds_working_secrets(rendered):
    env_file = rendered / "etc" / "panel.env"
    st = env_file.stat()
    assert st.st_mode & 0o777 == 0o600
    assert st.st_uid == _uid("www-data")
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    Fernet(values["PANEL_ENCRYPTION_KEYS"])  # a real Fernet key
    assert len(values["SECRET_KEY"]) >= 40 and len(values["PANEL_AUDIT_KEYS"]) >= 40
    assert values["DATABASE_URL"].startswith("postgres://panel:")
    assert values["ALLOWED_HOSTS"] == "panel.example.test"
    assert values["PANEL_BEHIND_PROXY"] == "1"
    assert (rendered / "etc" / "tls" / "panel.key").stat().st_mode & 0o777 == 0o600


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def test_running_again_keeps_the_secrets(rendered):
    """The encryption key opens every stored secret: a re-run (an upgrade) must not
    replace it."""
    before = (rendered / "etc" / "panel.env").read_text()
    again = render(rendered)
    assert again.returncode == 0, again.stderr
    assert (rendered / "etc" / "panel.env").read_text() == before


def test_nginx_accepts_the_site(rendered, tmp_path):
    nginx = program("/usr/sbin/nginx")
    site = (rendered / "nginx" / "panel.conf").read_text()
    assert "server 127.0.0.1:8001" in site and "server 127.0.0.1:8002" in site
    assert "@" not in "".join(line.split("#")[0] for line in site.splitlines())
    (tmp_path / "conf").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "conf" / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n access_log off;\n"
        f" client_body_temp_path {tmp_path}/body;\n"
        f" include {rendered}/nginx/panel.conf;\n}}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-q", "-p", f"{tmp_path}/", "-c", "conf/nginx.conf"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_systemd_accepts_the_units(rendered):
    analyze = program("/usr/bin/systemd-analyze")
    units = rendered / "systemd"
    venv_bin = rendered / "home" / "venv" / "bin"
    venv_bin.mkdir(parents=True, exist_ok=True)
    (rendered / "home" / "app").mkdir(exist_ok=True)
    python = venv_bin / "python"
    if not python.exists():
        python.symlink_to(Path(sys.executable))
    # Instances of the templates, as `systemctl enable panel-web@8001` would make them.
    shutil.copy(units / "panel-web@.service", units / "panel-web@8001.service")
    shutil.copy(units / "panel-worker@.service", units / "panel-worker@1.service")
    names = [
        "panel-web@8001.service",
        "panel-worker@1.service",
        "panel-metrics.service",
        "panel-vps-events.service",
        "panel.target",
    ]
    done = subprocess.run(
        [analyze, "verify", "--man=no", *names], cwd=units, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    web = (units / "panel-web@8001.service").read_text()
    assert "manage.py runweb --bind 127.0.0.1 --port %i" in web
    worker = (units / "panel-worker@1.service").read_text()
    # The stop signal must reach the cluster only, so its task processes finish their tasks.
    assert "KillMode=mixed" in worker and "manage.py qcluster" in worker


def test_a_mistake_in_a_unit_is_caught(rendered, tmp_path):
    """The check above would notice a broken unit (systemd only warns and goes on)."""
    analyze = program("/usr/bin/systemd-analyze")
    text = (rendered / "systemd" / "panel-worker@.service").read_text()
    (tmp_path / "broken@1.service").write_text(text.replace("ExecStart=", "ExecStrat="))
    done = subprocess.run(
        [analyze, "verify", "--man=no", "broken@1.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "ExecStrat" in done.stderr


def test_names_are_checked_before_use(tmp_path):
    for bad in ({"PANEL_DOMAIN": "x;touch /tmp/pwned"}, {"PANEL_WEB_PORTS": "8001 80a"}):
        done = render(tmp_path, **bad)
        assert done.returncode == 2, done.stderr
    assert not (tmp_path / "etc").exists()


def test_compose_file_mirrors_the_layout(tmp_path):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "web1", "web2", "worker1", "worker2", "nginx"} <= set(
        services
    )
    for name in ("web1", "web2"):
        assert services[name]["command"][:3] == ["python", "manage.py", "runweb"]
        assert "healthz/ready" in services[name]["healthcheck"]["test"][-1]
    for name in ("worker1", "worker2"):
        assert services[name]["command"] == ["python", "manage.py", "qcluster"]
    assert services["migrate"]["command"] == ["python", "manage.py", "upgrade", "--no-restart"]
    assert services["web1"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["web1"]["env_file"] == "panel.env"
    assert "./nginx/compose.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    # The compose site is the template rendered for the containers: they cannot drift apart.
    fresh = tmp_path / "compose.conf"
    done = render(
        tmp_path,
        "--render-nginx",
        PANEL_DOMAIN="_",
        PANEL_WEB_UPSTREAMS="web1:8000 web2:8000",
        NGINX_SITE=str(fresh),
        PANEL_ETC="/etc/panel",
        PANEL_STATE="/var/lib/panel",
        HTTP_LISTEN="80",
        HTTPS_LISTEN="443",
    )
    assert done.returncode == 0, done.stderr
    assert fresh.read_text() == (DEPLOY / "nginx" / "compose.conf").read_text()


def test_container_image_runs_the_web_process_unprivileged():
    lines = [
        line.strip()
        for line in (DEPLOY / "Containerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0].startswith("FROM docker.io/library/python:3.11")
    assert "USER panel" in lines
    cmd = '["python", "manage.py", "runweb", "--bind", "0.0.0.0", "--port", "8000"]'
    assert lines[-1] == f"CMD {cmd}"


def test_compose_secrets_are_ignored_by_git():
    """compose-secrets.sh writes deploy/*.env and deploy/tls/: never to be committed."""
    paths = ["deploy/panel.env", "deploy/postgres.env", "deploy/tls/panel.key"]
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *paths], capture_output=True)
    assert done.returncode == 0 and done.stdout.decode().split() == paths


@pytest.mark.parametrize(
    "bad",
    [
        {"PANEL_REDIS_URL": "redis://127.0.0.1:6379/0\nSECRET_KEY=$(id)"},
        {"PANEL_REDIS_URL": "redis://x:`id`@127.0.0.1/0"},
        {"PANEL_HOME": "/opt/panel;id"},
        {"PANEL_ETC": "/etc/../tmp/panel"},
        {"PANEL_STATE": "var/lib/panel"},
    ],
)
def test_paths_and_redis_url_are_checked_before_use(tmp_path, bad):
    done = render(tmp_path, **bad)
    assert done.returncode == 2, done.stderr
    assert not (tmp_path / "etc").exists()


def test_code_is_extracted_fresh_and_owned_by_root():
    script = INSTALL.read_text()
    assert "--no-same-owner --no-same-permissions -xf -" in script
    assert 'mv "$PANEL_HOME/app.new" "$PANEL_HOME/app"' in script


def test_database_password_goes_through_the_environment():
    """The install's SQL, run by real psql against the test server: the role gets the
    password from PANEL_DB_PASSWORD (\\getenv), and no psql argument carries it."""
    import secrets
    from urllib.parse import urlsplit

    script = INSTALL.read_text()
    call = script[script.index("runuser -u postgres -- psql") :].split("<<'SQL'")[0]
    assert "pw" not in call and "password" not in call.lower()
    sql = script.split("<<'SQL'\n", 1)[1].split("\nSQL\n", 1)[0]
    # The panel's own database may be SQLite: the machine's PostgreSQL serves either way.
    url = urlsplit(os.environ.get("DATABASE_URL", ""))
    if url.scheme not in ("postgres", "postgresql"):
        url = urlsplit("postgres://postgres@127.0.0.1:5432/postgres")
    if not shutil.which("psql"):
        require_real("needs psql")
    name = f"deploy_probe_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    conn = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432)]
    admin = [*conn, "-U", url.username or "postgres", "-d", "postgres"]
    env = {**os.environ, "PANEL_DB_PASSWORD": password}
    try:
        done = subprocess.run(
            ["psql", *admin, "-q", "-v", "ON_ERROR_STOP=1", "-v", f"name={name}"],
            input=sql,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        login = subprocess.run(
            ["psql", *conn, "-U", name, "-d", name, "-tAc", "select current_user"],
            env={**os.environ, "PGPASSWORD": password},
            capture_output=True,
            text=True,
        )
        assert login.stdout.strip() == name, login.stderr
        query = f"select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname='{name}'"
        stored = subprocess.run(["psql", *admin, "-tAc", query], capture_output=True, text=True)
        assert stored.stdout.strip() == "t", stored.stderr  # set, not empty (trust or not)
    finally:
        for stmt in (f"DROP DATABASE IF EXISTS {name}", f"DROP ROLE IF EXISTS {name}"):
            subprocess.run(["psql", *admin, "-qc", stmt], capture_output=True)


def test_only_nginx_may_say_who_the_client_is_in_compose():
    """X-Forwarded-For is believed from nginx's fixed address only, not from every container
    on the network (a compromised worker could otherwise pose as any client)."""
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    nginx = services["nginx"]["networks"]["panel"]["ipv4_address"]
    for name in ("web1", "web2", "worker1", "migrate"):
        assert services[name]["environment"]["PANEL_TRUSTED_PROXIES"] == f"{nginx}/32", name


def test_the_https_redirect_uses_the_checked_host():
    for site in (DEPLOY / "nginx" / "panel.conf.in", DEPLOY / "nginx" / "compose.conf"):
        text = site.read_text()
        assert "return 301 https://$host$request_uri;" in text
        assert "https://$http_host" not in text
