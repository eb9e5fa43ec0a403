"""Settings the deployment relies on, read as a fresh process reads them."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def settings_of(**env: str) -> dict:
    script = (
        "import json, django; django.setup(); from django.conf import settings;"
        "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PYTEST_"))}
    base.update(DJANGO_SETTINGS_MODULE="panel.settings", **env)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=base, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_web_processes_get_a_bounded_connection_pool(tmp_path):
    url = "postgres://panel:pw@127.0.0.1:5432/panel"
    options = settings_of(DATABASE_URL=url, PANEL_DB_POOL_SIZE="8", PANEL_VAR_DIR=str(tmp_path))
    assert options["pool"] == {"min_size": 1, "max_size": 8, "timeout": 20}
    assert "pool" not in settings_of(DATABASE_URL=url, PANEL_VAR_DIR=str(tmp_path))


def test_every_local_app_is_packaged():
    """An installed (not editable) panel carries every app: each top-level package the
    settings list is matched by pyproject's package list (``backups`` once was not)."""
    import fnmatch
    import tomllib

    from django.conf import settings

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    local = {app.split(".")[0] for app in settings.INSTALLED_APPS}
    local = {name for name in local if (ROOT / name / "__init__.py").exists()}
    assert {"core", "backups", "mail"} <= local
    missing = [name for name in local if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert missing == []


def test_a_pool_with_persistent_connections_is_refused_at_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PYTEST_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="panel.settings",
        DATABASE_URL="postgres://panel:pw@127.0.0.1:5432/panel",
        PANEL_DB_POOL_SIZE="8",
        DATABASE_CONN_MAX_AGE="60",
        PANEL_VAR_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and "DATABASE_CONN_MAX_AGE=0" in done.stderr
