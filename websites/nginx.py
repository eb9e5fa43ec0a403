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

from servers.engine import ApplyError, IncludeDirService, Probe, ProfileKey, ServiceRun, fill
from servers.engine.profile import Profile

PROBE_PATH = "/.well-known/hosting-panel/probe"
REVISION_HEADER = "X-Panel-Revision"

# HUP the master, then wait on the server for a new worker generation (proof the new
# configuration loaded) or an [emerg]/[alert] in the error log since the signal (proof it did
# not). Constant text; the pid file, log and timeout are arguments.
RELOAD_SCRIPT = Path(__file__).with_name("nginx_reload.sh").read_text()
PROBE_ATTEMPTS = 3


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
    """Insert the probe location before the server block's closing brace; the revision is
    a hash of everything else, so it changes exactly when the vhost does."""
    revision = hashlib.sha256(body.encode()).hexdigest()[:16]
    head, _, _tail = body.rstrip().rpartition("}")
    return f"{head}{probe_block(listen, revision)}}}\n", revision


def _holder(listen: str, taken: dict[str, str]) -> str:
    """The program (not nginx) that holds the address an nginx ``listen`` value needs."""
    if ":" not in listen:  # a bare port: every address
        return next((prog for addr, prog in taken.items() if addr.endswith(f":{listen}")), "")
    host, port = listen.rsplit(":", 1)
    for addr in (f"{host}:{port}", f"0.0.0.0:{port}", f"*:{port}"):
        if addr in taken:
            return taken[addr]
    return ""


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
            "nginx_test", ["nginx", "-t", "-q", "-c", "{conf}"], "command", "Validates {conf}."
        ),
        ProfileKey("nginx_pid_file", "/run/nginx.pid", "path", "The master's pid file."),
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

    def validate(self, run: ServiceRun) -> dict[str, str]:
        failed = self._port_conflicts(run)
        if failed:
            run.held.update(p for p, f in run.files.items() if f.unit in failed)
        failed.update(super().validate(run))
        return failed

    def _port_conflicts(self, run: ServiceRun) -> dict[str, str]:
        """``nginx -t`` ignores bind errors; the reload would fail on them. A unit listening
        where a process other than nginx listens fails here, before anything is swapped."""
        wanted: dict[str, set[str]] = {}
        for f in run.live_files().values():
            for m in re.finditer(rb"^\s*listen\s+([^\s;]+)", f.content, re.M):
                wanted.setdefault(f.unit, set()).add(m.group(1).decode())
        if not wanted:
            return {}
        res = run.t.run(["ss", "-Hltnp"], timeout=30)
        if not res.ok:
            return {}  # no ss: the reload check still catches it
        taken: dict[str, str] = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and "nginx" not in line:
                program = re.search(r'users:\(\("([^"]+)"', line)
                taken[parts[3]] = program.group(1) if program else "another program"
        failed = {}
        for unit, listens in wanted.items():
            for listen in sorted(listens):
                holder = _holder(listen, taken)
                if holder:
                    failed[unit] = f"{listen} is in use by {holder}"
        return failed

    def reload(self, run: ServiceRun) -> None:
        res = run.t.run(
            [
                "sh",
                "-c",
                RELOAD_SCRIPT,
                "nginx-reload",
                run.profile.nginx_pid_file,
                run.profile.nginx_error_log,
                str(run.profile.nginx_reload_timeout),
            ],
            timeout=run.profile.nginx_reload_timeout + 30,
        )
        if not res.ok:
            raise ApplyError(f"nginx did not load the new configuration: {res.stdout.strip()}")

    def verify(self, run: ServiceRun) -> dict[str, str]:
        probes = {f.unit: f.probe for f in run.live_files().values() if f.probe is not None}
        failed: dict[str, str] = {}
        for _attempt in range(PROBE_ATTEMPTS):
            failed = self._probe(run, probes)
            if not failed:
                return {}
            probes = {u: p for u, p in probes.items() if u in failed}
        return failed

    def _probe(self, run: ServiceRun, probes: dict[str, Probe]) -> dict[str, str]:
        if not probes:
            return {}
        host, port = listen_target(run.profile.nginx_listen)
        argv = [
            "curl",
            "-s",
            "--parallel",
            "--parallel-max",
            "32",
            "-m",
            "5",
            "--connect-to",
            f"::{host}:{port}",
            "-w",
            "%{http_code} %header{" + REVISION_HEADER.lower() + "} %{url_effective}\\n",
        ]
        urls = {}
        for unit, probe in sorted(probes.items()):
            for host in probe.hosts:
                urls[f"http://{host}{PROBE_PATH}"] = (unit, host, "probe")
            for path in probe.gateway_paths:
                urls[f"http://{probe.hosts[0]}{path}"] = (unit, probe.hosts[0], path)
        for url in urls:
            argv += ["-o", "/dev/null", url]
        res = run.t.run(argv, timeout=60)
        seen: dict[str, tuple[str, str]] = {}
        for line in res.stdout.splitlines():
            parts = line.split(" ")
            if len(parts) >= 3:
                seen[parts[-1]] = (parts[0], " ".join(parts[1:-1]).strip())
        failed = {}
        for url, (unit, host, kind) in urls.items():
            code, revision = seen.get(url, ("000", ""))
            probe = probes[unit]
            if kind == "probe":
                if code == "000":
                    failed.setdefault(unit, f"nginx does not answer for {host}")
                elif revision != probe.revision:
                    failed.setdefault(
                        unit,
                        f"{host} is not served by this site's new configuration (HTTP {code}, "
                        f"revision {revision or 'none'}, expected {probe.revision}): another "
                        "site may claim the same name",
                    )
            elif code in ("502", "504"):
                failed.setdefault(unit, f"{host}{kind} answers {code}: its backend is not up")
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
