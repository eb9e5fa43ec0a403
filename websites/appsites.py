"""App sites (Node.js, Python): a process per site, run by the server's process manager as
the owner's system account, listening on 127.0.0.1:<port>, with nginx proxying to it.

Per app site (its unit ``website:<uuid>``, beside its vhost) the apply engine writes:

- its environment, ``<app_env_dir>/<program>.json`` (mode 0400, owned by the account: only
  the app reads it), the customer's variables plus PORT and HOST=127.0.0.1;
- its program: a supervisord ``[program:...]`` file in ``<supervisor_dir>`` where there is
  no systemd (websites/appservices.py: validated with supervisord's own parser, applied with
  ``supervisorctl reread`` + ``update``, verified RUNNING and listening), or a systemd unit
  where systemd runs (``MemoryMax=`` from the plan);

and once per server the runner both name, ``websites/app_run.py`` (unit ``apps:runner``),
which checks the environment file's revision, sets the variables and starts the command
(no shell), and under supervisord enforces the plan's memory limit (see its docstring).

The command line holds the environment file's revision, so a changed variable changes the
program and the process manager restarts the app.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from django.core.exceptions import ValidationError

from servers.engine import ManagedFile, ProfileKey, UnitFailed, profile_for
from websites.models import APP_KINDS, Website

RUNNER_UNIT = "apps:runner"
RUNNER = Path(__file__).with_name("app_run.py").read_bytes()
HEADER = "# Managed by the hosting panel: changes here are reported as drift and undone.\n"

# A start command: words separated by single spaces, of characters no shell, INI parser or
# supervisord's %(...)s expansion gives a meaning to. There is no shell anyway: the words
# are the argv.
COMMAND_WORD = r"[A-Za-z0-9_./:=@+,-]+"
START_COMMAND = re.compile(rf"(?!-){COMMAND_WORD}(?: {COMMAND_WORD}){{0,63}}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# Printable text (any language), no control characters: one line, one value.
ENV_VALUE = re.compile(r"[^\x00-\x1f\x7f]{0,4096}")
RESERVED_ENV = frozenset({"PORT", "HOST"})
MAX_ENV = 50
MASK = "********"
PORT_RANGE = re.compile(r"(\d{4,5})-(\d{4,5})")
MANAGERS = ("auto", "supervisord", "systemd")

# Process states, as supervisorctl and systemctl say them -> what the panel shows.
STATES = {
    "RUNNING": "running",
    "STARTING": "starting",
    "BACKOFF": "crashed",
    "FATAL": "crashed",
    "EXITED": "crashed",
    "STOPPED": "stopped",
    "STOPPING": "stopping",
    "active": "running",
    "activating": "starting",
    "auto-restart": "crashed",
    "failed": "crashed",
    "inactive": "stopped",
    "deactivating": "stopping",
}


# --- checks ---------------------------------------------------------------------------------


def validate_start_command(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Give the command that starts the app, e.g. node server.js.")
    value = " ".join(value.split())
    if len(value) > 500 or not START_COMMAND.fullmatch(value):
        raise ValidationError(
            "The start command is words separated by spaces, made of letters, digits and "
            "_ . / : = @ + , - (no shell: no quotes, ;, |, &, $, redirections)."
        )
    return value


def parse_env(text: str) -> dict[str, str]:
    """The stored environment (a JSON object), checked whole; {} when empty."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationError("The app's environment is not a JSON object.") from exc
    return check_env(data)


def check_env(data) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ValidationError("Give the environment as an object of NAME: value.")
    if len(data) > MAX_ENV:
        raise ValidationError(f"At most {MAX_ENV} environment variables.")
    out = {}
    for name, value in data.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise ValidationError(
                f"{str(name)[:70]!r} is not a variable name: capitals, digits and _, "
                "not starting with a digit."
            )
        if name in RESERVED_ENV:
            raise ValidationError(f"{name} is set by the panel (the app's port and address).")
        if not isinstance(value, str) or not ENV_VALUE.fullmatch(value):
            raise ValidationError(
                f"{name}: a value is one line of at most 4096 characters, without control "
                "characters (newlines, tabs, NUL)."
            )
        out[name] = value
    return dict(sorted(out.items()))


def merge_env(stored: dict[str, str], changes) -> dict[str, str]:
    """Apply an edit: NAME: value sets, NAME: null removes, the mask keeps what is stored
    (a form or a client sending back what it read never overwrites a secret)."""
    if not isinstance(changes, dict):
        raise ValidationError("Give the environment as an object of NAME: value.")
    env = dict(stored)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        elif value == MASK and name in stored:
            continue
        else:
            env[name] = value
    return check_env(env)


def masked_env(site: Website) -> dict[str, str]:
    """What pages and the API show: the names, never the values."""
    try:
        return dict.fromkeys(site.env_vars(), MASK)
    except ValidationError:
        return {}


def port_range(profile) -> tuple[int, int]:
    m = PORT_RANGE.fullmatch(str(profile.app_ports).strip())
    low, high = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not (1024 <= low <= high <= 65535):
        raise ValidationError(
            f"app_ports {profile.app_ports!r} is not a range of ports like 20000-29999."
        )
    return low, high


def allocate_port(server) -> int:
    """The lowest port of the server's range no site of the server holds. Call inside a
    transaction that locked the server row (two creations never get the same port; the
    unique constraint on (server, app_port) backs it up)."""
    low, high = port_range(profile_for(server))
    taken = set(
        Website.objects.filter(server=server, app_port__isnull=False).values_list(
            "app_port", flat=True
        )
    )
    for port in range(low, high + 1):
        if port not in taken:
            return port
    raise ValidationError({"server": f"Every app port of {server.name} ({low}-{high}) is taken."})


def manager_of(server, profile) -> str:
    """supervisord or systemd: the profile's choice, else systemd where it runs (facts)."""
    chosen = profile.app_manager
    if chosen not in MANAGERS:
        raise ValidationError(f"app_manager {chosen!r} is not one of {', '.join(MANAGERS)}.")
    if chosen != "auto":
        return chosen
    return "systemd" if (server.facts or {}).get("systemd_running") else "supervisord"


def process_state(raw: str) -> str:
    return STATES.get(raw, raw.lower() if raw else "unknown")


# --- rendering ------------------------------------------------------------------------------


def env_file_content(site: Website) -> bytes:
    env = {**site.env_vars(), "HOST": "127.0.0.1", "PORT": str(site.app_port)}
    return (json.dumps(env, sort_keys=True, ensure_ascii=False) + "\n").encode()


def revision_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


def app_paths(site: Website, profile, account: str) -> dict[str, str]:
    from websites.apply import home_dir

    home = home_dir(profile, account)
    return {
        "dir": f"{home}/sites/{site.domain}/app",
        "log": f"{home}/logs/{site.domain}.app.log",
        "env": f"{profile.app_env_dir.rstrip('/')}/{site.program_name}.json",
        "home": home,
    }


def runner_argv(profile, env_path: str, revision: str, memory_mb: int, command: str) -> str:
    return (
        f"{profile.app_python} {profile.app_runner} {env_path} {revision} {memory_mb} -- {command}"
    )


def render_supervisor_program(
    site: Website, profile, account: str, *, revision: str, memory_mb: int
) -> str:
    paths = app_paths(site, profile, account)
    command = runner_argv(
        profile, paths["env"], revision, memory_mb, validate_start_command(site.start_command)
    )
    return HEADER + (
        f"; listens on 127.0.0.1:{site.app_port}\n"
        f"[program:{site.program_name}]\n"
        f"command={command}\n"
        f"directory={paths['dir']}\n"
        f"user={account}\n"
        f'environment=HOME="{paths["home"]}",USER="{account}"\n'
        f"autostart={'true' if site.app_running else 'false'}\n"
        "autorestart=true\n"
        "startsecs=1\n"
        "startretries=3\n"
        "stopsignal=TERM\n"
        "stopwaitsecs=10\n"
        "stopasgroup=true\n"
        "killasgroup=true\n"
        "redirect_stderr=true\n"
        f"stdout_logfile={paths['log']}\n"
        "stdout_logfile_maxbytes=10MB\n"
        "stdout_logfile_backups=3\n"
    )


def render_systemd_unit(
    site: Website, profile, account: str, *, revision: str, memory_mb: int
) -> str:
    paths = app_paths(site, profile, account)
    # The runner does not watch memory under systemd (0): the cgroup's MemoryMax does.
    command = runner_argv(
        profile, paths["env"], revision, 0, validate_start_command(site.start_command)
    )
    stopped = "" if site.app_running else "# panel: autostart=false\n"
    return (
        HEADER
        + stopped
        + (
            f"# listens on 127.0.0.1:{site.app_port}\n"
            "[Unit]\n"
            f"Description=Hosting panel app {site.domain}\n"
            "After=network.target\n"
            "\n"
            "[Service]\n"
            "Type=simple\n"
            f"User={account}\n"
            f"Group={account}\n"
            f"WorkingDirectory={paths['dir']}\n"
            f"Environment=HOME={paths['home']} USER={account}\n"
            f"ExecStart={command}\n"
            "Restart=always\n"
            "RestartSec=2\n"
            f"MemoryMax={memory_mb}M\n"
            "MemorySwapMax=0\n"
            "KillMode=control-group\n"
            "NoNewPrivileges=yes\n"
            f"StandardOutput=append:{paths['log']}\n"
            "StandardError=inherit\n"
            "\n"
            "[Install]\n"
            "WantedBy=multi-user.target\n"
        )
    )


def memory_of(site: Website) -> int:
    from websites.plans import plan_of

    plan = plan_of(site.owner)
    return plan.app_memory_mb if plan is not None else 256


class AppFiles:
    """The runner, once per server with app sites (unit ``apps:runner``). Each app's own
    files belong to its site's unit (``site_files``, called by WebsiteFiles)."""

    unit_prefix = "apps:"
    profile_keys = (
        ProfileKey(
            "app_manager",
            "auto",
            "text",
            "Process manager for app sites: auto (systemd where it runs, else supervisord), "
            "supervisord or systemd.",
        ),
        ProfileKey("app_ports", "20000-29999", "text", "Ports app sites are given (FROM-TO)."),
        ProfileKey(
            "app_env_dir",
            "/etc/hosting-panel/apps",
            "path",
            "App sites' environment files (each readable by its account only).",
        ),
        ProfileKey(
            "app_runner",
            "/usr/local/lib/hosting-panel/app-run",
            "path",
            "The panel's app starter (environment, memory limit under supervisord).",
        ),
        ProfileKey("app_python", "/usr/bin/python3", "path", "The Python that runs the starter."),
    )

    def files(self, server, profile, units):
        """Only the runner: the sites' own files come with their unit (site_files)."""
        if units is not None and RUNNER_UNIT not in units:
            return
        apps = Website.objects.filter(server=server, kind__in=APP_KINDS)
        if not apps.exclude(status=Website.Status.DELETING).exists():
            return
        try:
            manager = manager_of(server, profile)
        except ValidationError as exc:
            yield UnitFailed(RUNNER_UNIT, " ".join(exc.messages))
            return
        yield ManagedFile(
            path=profile.app_runner,
            content=RUNNER,
            service=manager,
            unit=RUNNER_UNIT,
            mode=0o755,
        )

    def report(self, server, ok: set[str], failed: dict[str, str]) -> None:
        """The runner's failure shows on the sites through their own units."""


def site_files(site: Website, server, profile, account: str):
    """An app site's environment and program (with its unit), for WebsiteFiles."""
    if site.suspended or not site.is_app:
        return
    if site.app_port is None:
        raise ValidationError("The app has no port.")
    manager = manager_of(server, profile)
    env = env_file_content(site)
    revision = revision_of(env)
    paths = app_paths(site, profile, account)
    memory = memory_of(site)
    yield ManagedFile(
        path=paths["env"],
        content=env,
        service=manager,
        unit=site.unit,
        mode=0o400,
        owner=account,
        group=account,
    )
    if manager == "systemd":
        text = render_systemd_unit(site, profile, account, revision=revision, memory_mb=memory)
        path = f"{profile.systemd_dir.rstrip('/')}/{site.program_name}.service"
    else:
        text = render_supervisor_program(
            site, profile, account, revision=revision, memory_mb=memory
        )
        path = f"{profile.supervisor_dir.rstrip('/')}/{site.program_name}.conf"
    yield ManagedFile(path=path, content=text.encode(), service=manager, unit=site.unit)
