"""The process managers that run app sites, for the apply engine: supervisord where there is
no systemd, systemd where it runs (websites/appsites.py renders their files).

supervisord: each program file is checked with supervisord's own parser on the server
before anything is swapped in (a refused file fails its site alone), applied with
``supervisorctl reread`` and ``update`` (which restarts exactly the programs whose file
changed and stops removed ones), then verified: each changed app RUNNING and accepting
connections on its port, or stopped or gone as wanted. An app that crashes fails its own
site (its previous files come back); nginx and the other sites are never touched.

systemd: units in ``systemd_dir``; ``daemon-reload``, then each changed unit enabled and
restarted (or disabled and stopped), verified the same way.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

from servers.engine import ApplyError, Job, ProfileKey, Service, ServiceRun, Step, fill
from servers.engine.contracts import StepResult
from servers.engine.profile import Profile

CHECK_SCRIPT = Path(__file__).with_name("app_check.py").read_text()
RELOAD_SCRIPT = Path(__file__).with_name("app_reload.sh").read_text()
VERIFY_SCRIPT = Path(__file__).with_name("app_verify.sh").read_text()
SYSTEMD_SCRIPT = Path(__file__).with_name("app_systemd.sh").read_text()
PROGRAM = re.compile(r"panel-app-[0-9a-f]{16}")
PORT_LINE = re.compile(rb"^[;#] listens on 127\.0\.0\.1:(\d+)$", re.M)
LOG_LINE = re.compile(rb"^(?:stdout_logfile=|StandardOutput=append:)(\S+)$", re.M)
STOPPED_LINE = re.compile(rb"^(?:# panel: )?autostart=false$", re.M)


def supervisorctl(profile: Profile) -> list[str]:
    return fill(profile.supervisorctl, conf=profile.supervisor_conf)


def _program(path: str, suffix: str) -> str | None:
    name = posixpath.basename(path).removesuffix(suffix)
    return name if PROGRAM.fullmatch(name) and path.endswith(suffix) else None


class _AppService(Service):
    """What both managers share: which apps a run touches, and their verification."""

    suffix = ""
    reload_order = 30  # the apps before the vhosts that proxy to them

    def program_dir(self, profile: Profile) -> str:
        raise NotImplementedError

    def touches_programs(self, run: ServiceRun) -> bool:
        """Whether any program file is written or removed, rolled back ones included (the
        process manager must then read its files again, to drop what was rolled back)."""
        directory = self.program_dir(run.profile).rstrip("/")
        return any(
            _program(p, self.suffix) and posixpath.dirname(p) == directory
            for p in [*run.files, *run.removed]
        )

    def apps(self, run: ServiceRun) -> dict[str, tuple[str, str, str, str]]:
        """Program name -> (unit, port, want, log) for every app this run changes."""
        out = {}
        directory = self.program_dir(run.profile).rstrip("/")
        for path, f in run.live_files().items():
            name = _program(path, self.suffix)
            if name is None or posixpath.dirname(path) != directory:
                continue
            port = PORT_LINE.search(f.content)
            log = LOG_LINE.search(f.content)
            want = "stop" if STOPPED_LINE.search(f.content) else "run"
            out[name] = (
                f.unit,
                port.group(1).decode() if port else "0",
                want,
                log.group(1).decode() if log else "/dev/null",
            )
        for path, unit in run.live_removed().items():
            name = _program(path, self.suffix)
            if name is not None and posixpath.dirname(path) == directory:
                out[name] = (unit, "0", "gone", "/dev/null")
        return out

    def verify_step(self, run: ServiceRun) -> Step | None:
        apps = self.apps(run)
        if not apps:
            return None
        timeout = run.profile.app_start_timeout
        lines = "".join(f"{n} {p} {w} {log}\n" for n, (_u, p, w, log) in sorted(apps.items()))
        argv = ["sh", "-c", VERIFY_SCRIPT, "app-verify", self.name, str(timeout)]
        if self.name == "supervisord":
            argv += supervisorctl(run.profile)
        return Step(argv, timeout * len(apps) + 30, stdin=lines.encode())

    def verify_errors(self, run: ServiceRun, result: StepResult) -> dict[str, str]:
        if result.ok:
            return {}
        apps = self.apps(run)
        failed: dict[str, list[str]] = {}
        for line in result.output.splitlines():
            name, _, why = line.partition(": ")
            if name in apps:
                failed.setdefault(apps[name][0], []).append(why)
        if not failed:
            return {u: result.output.strip()[:2000] for u in run.units()}
        return {unit: "The app " + "\n".join(lines)[:2000] for unit, lines in failed.items()}

    def _held_apps(self, run: ServiceRun) -> dict[str, tuple[str, str, str, str]]:
        """Programs rolled back in this run: systemd stops new ones (their unit file is gone
        again) and restarts changed ones that are enabled (their previous file is back)."""
        out = {}
        for path in [*run.files, *run.removed]:
            name = _program(path, self.suffix)
            if name and path in run.held:
                out[name] = (
                    run.unit_of(path) or "",
                    "0",
                    "run" if path in run.removed else "gone",
                    "",
                )
        return out


class SupervisorService(_AppService):
    name = "supervisord"
    suffix = ".conf"
    validated_by_jobs = True
    profile_keys = (
        ProfileKey(
            "supervisor_conf", "/etc/supervisor/supervisord.conf", "path", "supervisord's config."
        ),
        ProfileKey(
            "supervisor_dir",
            "/etc/supervisor/conf.d",
            "path",
            "App programs; supervisord.conf's [include] files must name <dir>/*.conf.",
        ),
        ProfileKey(
            "supervisorctl",
            ["supervisorctl", "-c", "{conf}"],
            "command",
            "supervisorctl for the configuration {conf}.",
        ),
        ProfileKey(
            "supervisor_start",
            ["supervisord", "-c", "{conf}"],
            "command",
            "Starts supervisord where there is no systemd (Prepare server, when it is not "
            "running).",
        ),
        ProfileKey(
            "app_start_timeout",
            30,
            "seconds",
            "How long an app may take to run and accept connections after a change.",
        ),
    )

    def program_dir(self, profile: Profile) -> str:
        return profile.supervisor_dir

    def _check_job(self, run: ServiceRun) -> Job | None:
        directory = run.profile.supervisor_dir.rstrip("/")
        programs = {
            p: f.content.decode()
            for p, f in run.live_files().items()
            if _program(p, self.suffix) and posixpath.dirname(p) == directory
        }
        if not programs and not run.live_removed():
            return None
        argv = [
            run.profile.app_python,
            "-c",
            CHECK_SCRIPT,
            run.profile.supervisor_conf,
            directory,
        ]
        return Job(self.name, argv, stdin=json.dumps(programs).encode())

    def validation_jobs(self, run: ServiceRun) -> list[Job]:
        job = self._check_job(run)
        return [job] if job else []

    def validate(self, run: ServiceRun) -> dict[str, str]:
        result = run.jobs.pop(self.name, None)
        if result is None or run.held:
            job = self._check_job(run)
            if job is None:
                return {}
            result = run.step(Step(job.argv, 60, stdin=job.stdin))
        if result.code == 0:
            return {}
        failed = {}
        for line in result.output.splitlines():
            if line.startswith("@@bad "):
                path, _, why = line.removeprefix("@@bad ").partition("\t")
                unit = run.unit_of(path)
                if unit:
                    failed[unit] = f"supervisord refuses the program: {why}"
        if not failed:
            raise ApplyError(f"supervisord: {result.output.strip()[:2000]}")
        for unit, why in sorted(failed.items()):
            run.log(f"{unit}: {why}")
        return failed

    def reload_step(self, run: ServiceRun) -> Step | None:
        if not self.touches_programs(run):
            return None  # only the runner: nothing to tell supervisord
        argv = ["sh", "-c", RELOAD_SCRIPT, "supervisor-reload", *supervisorctl(run.profile)]
        return Step(argv, 120)


class SystemdService(_AppService):
    name = "systemd"
    suffix = ".service"
    profile_keys = (
        ProfileKey(
            "systemd_dir", "/etc/systemd/system", "path", "Units of app sites (systemd servers)."
        ),
    )

    def program_dir(self, profile: Profile) -> str:
        return profile.systemd_dir

    def reload_step(self, run: ServiceRun) -> Step | None:
        if not self.touches_programs(run):
            return None
        apps = {**self._held_apps(run), **self.apps(run)}
        lines = "".join(f"{n} {w}\n" for n, (_u, _p, w, _l) in sorted(apps.items()))
        return Step(["sh", "-c", SYSTEMD_SCRIPT, "app-systemd"], 180, stdin=lines.encode())
