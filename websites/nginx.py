"""nginx for the apply engine: the vhost template and the service that validates, reloads and
verifies it.

Every vhost answers a probe location, reachable only from the server itself, with a revision
of its own text: after a reload the engine asks each changed site by its ``Host:`` and knows
that exactly this configuration serves that name (not an older one, not another site's that
claims the same name).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from servers.engine import IncludeDirService, Job, ProfileKey, ServiceRun, Step, fill
from servers.engine.contracts import StepResult
from servers.engine.profile import Profile

PROBE_PATH = "/.well-known/hosting-panel/probe"
REVISION_HEADER = "X-Panel-Revision"

# HUP the master, then wait on the server for a new worker generation (proof the new
# configuration loaded) or an [emerg]/[alert] in the error log since the signal (proof it did
# not). Constant text; the pid file, log and timeout are arguments.
RELOAD_SCRIPT = Path(__file__).with_name("nginx_reload.sh").read_text()
PROBE_SCRIPT = Path(__file__).with_name("nginx_probe.sh").read_text()
PORTS_SCRIPT = Path(__file__).with_name("nginx_ports.sh").read_text()
PORTS_JOB = "nginx-ports"


def listen_target(listen: str) -> tuple[str, str]:
    """The address and port a probe connects to for an nginx ``listen`` value."""
    if ":" not in listen:
        return "127.0.0.1", listen
    host, port = listen.rsplit(":", 1)
    return host, port


def probe_block(listen: str, revision: str) -> str:
    host, _port = listen_target(listen)
    allow = "" if host in ("127.0.0.1", "[::1]") else f" allow {host.strip('[]')};"
    return (
        f"    location = {PROBE_PATH} {{\n"
        f"        access_log off;\n"
        f"        allow 127.0.0.1; allow ::1;{allow} deny all;\n"
        f"        add_header {REVISION_HEADER} {revision} always;\n"
        f"        return 204;\n"
        f"    }}\n"
    )


def with_probe(body: str, listen: str) -> tuple[str, str]:
    """Insert the probe location before the closing brace of every server block (a line
    holding only "}": a vhost may have several, e.g. one that redirects www.NAME, and each
    name must answer); the revision is a hash of everything else, so it changes exactly when
    the vhost does."""
    revision = hashlib.sha256(body.encode()).hexdigest()[:16]
    probe = probe_block(listen, revision)
    text = re.sub(r"^\}$", lambda _m: probe + "}", body.rstrip() + "\n", flags=re.M)
    return text, revision


class NginxService(IncludeDirService):
    name = label = "nginx"
    reload_order = 50
    profile_keys = (
        ProfileKey("nginx_conf", "/etc/nginx/nginx.conf", "path", "nginx's main configuration."),
        ProfileKey(
            "nginx_sites_dir",
            "/etc/nginx/panel.d",
            "path",
            "Managed vhosts; nginx.conf must include this directory's *.conf.",
        ),
        ProfileKey("nginx_listen", "80", "listen", "Port or address:port vhosts listen on."),
        ProfileKey(
            "nginx_conf_d",
            "/etc/nginx/conf.d",
            "path",
            "Included by nginx.conf inside http {}; Prepare server puts the panel's include "
            "line there.",
        ),
        ProfileKey(
            "nginx_stock_site",
            "/etc/nginx/sites-enabled/default",
            "path",
            "Debian's stock default site: Prepare server disables it (the panel writes its "
            "own catch-all).",
        ),
        ProfileKey(
            "nginx_test", ["nginx", "-t", "-q", "-c", "{conf}"], "command", "Validates {conf}."
        ),
        ProfileKey("nginx_pid_file", "/run/nginx.pid", "path", "The master's pid file."),
        ProfileKey(
            "nginx_start",
            ["nginx", "-c", "{conf}"],
            "command",
            "Starts nginx where there is no systemd (Prepare server, when it is not running).",
        ),
        ProfileKey(
            "nginx_error_log",
            "/var/log/nginx/error.log",
            "path",
            "Where the master logs a failed reload.",
        ),
        ProfileKey("nginx_reload_timeout", 30, "seconds", "How long a reload may take."),
    )

    def main_conf(self, profile: Profile) -> str:
        return profile.nginx_conf

    def include_dir(self, profile: Profile) -> str:
        return profile.nginx_sites_dir.rstrip("/")

    def test_argv(self, profile: Profile, conf: str) -> list[str]:
        return fill(profile.nginx_test, conf=conf)

    def include_hint(self, profile: Profile) -> str:
        return f"include {self.include_dir(profile)}/*.conf;' inside its http block"

    def validation_jobs(self, run: ServiceRun) -> list[Job]:
        jobs = super().validation_jobs(run)
        ports = self._ports_step(run)
        return [*jobs, Job(PORTS_JOB, ports.argv, stdin=ports.stdin)] if ports else jobs

    def validate(self, run: ServiceRun) -> dict[str, str]:
        failed = self._port_conflicts(run)
        if failed:
            run.held.update(p for p, f in run.files.items() if f.unit in failed)
        failed.update(super().validate(run))
        return failed

    def _ports_step(self, run: ServiceRun) -> Step | None:
        pairs = sorted(
            (f.unit, m.group(1).decode())
            for f in run.live_files().values()
            for m in re.finditer(rb"^\s*listen\s+([^\s;]+)", f.content, re.M)
        )
        if not pairs:
            return None
        lines = "".join(f"{unit} {listen}\n" for unit, listen in pairs).encode()
        return Step(["sh", "-c", PORTS_SCRIPT, "nginx-ports"], 30, stdin=lines)

    def _port_conflicts(self, run: ServiceRun) -> dict[str, str]:
        """``nginx -t`` ignores bind errors; the reload would fail on them. A unit listening
        where a process other than nginx listens fails here, before anything is swapped."""
        step = self._ports_step(run)
        if step is None:
            return {}
        result = run.jobs.pop(PORTS_JOB, None) or run.step(step)
        failed = {}
        for line in result.output.splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[0] == "CONFLICT":
                failed.setdefault(parts[1], f"{parts[2]} is in use by {parts[3]}")
        return failed

    def reload_step(self, run: ServiceRun) -> Step:
        timeout = run.profile.nginx_reload_timeout
        argv = ["sh", "-c", RELOAD_SCRIPT, "nginx-reload", run.profile.nginx_pid_file]
        return Step([*argv, run.profile.nginx_error_log, str(timeout)], timeout + 30)

    def verify_step(self, run: ServiceRun) -> Step | None:
        urls = self._urls(run)
        if not urls:
            return None
        host, port = listen_target(run.profile.nginx_listen)
        lines = "".join(f"{url} {kind} {want}\n" for url, (_u, kind, want) in urls.items())
        timeout = 60 + len(urls) // 50
        argv = ["sh", "-c", PROBE_SCRIPT, "nginx-probe", host.strip("[]"), port]
        return Step(argv, timeout, stdin=lines.encode())

    def _urls(self, run: ServiceRun) -> dict[str, tuple[str, str, str]]:
        """url -> (unit, kind, expected revision) for every changed unit's probe."""
        urls = {}
        for f in sorted(run.live_files().values(), key=lambda f: f.path):
            if f.probe is None:
                continue
            for name in f.probe.hosts:
                urls[f"http://{name}{PROBE_PATH}"] = (f.unit, "probe", f.probe.revision)
            for path in f.probe.gateway_paths:
                urls[f"http://{f.probe.hosts[0]}{path}"] = (f.unit, "gateway", "-")
        return urls

    def verify_errors(self, run: ServiceRun, result: StepResult) -> dict[str, str]:
        if result.ok:
            return {}
        urls = self._urls(run)
        failed: dict[str, str] = {}
        for line in result.output.splitlines():
            parts = line.split()
            if len(parts) != 4 or parts[0] != "FAIL" or parts[1] not in urls:
                continue
            _fail, url, code, revision = parts
            unit, kind, want = urls[url]
            name = url.split("/")[2]
            if kind == "gateway":
                why = f"{name}{url.split(name, 1)[1]} answers {code}: its backend is not up"
            elif code == "000":
                why = f"nginx does not answer for {name}"
            else:
                why = (
                    f"{name} is not served by this site's new configuration (HTTP {code}, "
                    f"revision {revision if revision != '-' else 'none'}, expected {want}): "
                    "another site may claim the same name"
                )
            failed.setdefault(unit, why)
        if not failed:  # the script failed without naming a URL: every unit is suspect
            return {u: f"verification failed: {result.output.strip()[:500]}" for u in run.units()}
        return failed

    def blame(self, run: ServiceRun, error: str) -> set[str]:
        """Units named by a failed reload: by file, or by the address a bind() failed on."""
        found = set()
        for path, f in run.live_files().items():
            if path in error:
                found.add(f.unit)
        for m in re.finditer(r"bind\(\) to (\S+) failed", error):
            address = m.group(1)
            for f in run.live_files().values():
                listens = re.findall(rb"^\s*listen\s+([^\s;]+)", f.content, re.M)
                if any(_same_listen(x.decode(), address) for x in listens):
                    found.add(f.unit)
        return found


def _same_listen(listen: str, address: str) -> bool:
    if ":" not in listen:
        return address.endswith(f":{listen}")
    return listen == address or address == f"0.0.0.0:{listen.rsplit(':', 1)[1]}"
