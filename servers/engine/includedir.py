"""A service whose main configuration includes a directory of managed files (nginx vhosts,
PHP-FPM pools, ...): validation, finding the bad units, and clean error text.

The staged files are checked in place by the program's own test, run against a copy of the
main configuration whose include points at a tree of symlinks: the live files, with this
run's new files and removals applied. Nothing is copied, whatever the number of files. When
the test fails, the units named in its error are held back; when it names none, the bad
unit is found by bisection; each test is one round trip.
"""

from __future__ import annotations

import posixpath
import re

from servers.engine.contracts import ApplyError, Job, Service
from servers.engine.profile import Profile
from servers.engine.run import ServiceRun

MISSING_INCLUDE = 2


class IncludeDirService(Service):
    pattern = "*.conf"
    label = ""
    validated_by_jobs = True

    def main_conf(self, profile: Profile) -> str:
        raise NotImplementedError

    def include_dir(self, profile: Profile) -> str:
        raise NotImplementedError

    def test_argv(self, profile: Profile, conf: str) -> list[str]:
        raise NotImplementedError

    def include_hint(self, profile: Profile) -> str:
        return f"include {self.include_dir(profile)}/{self.pattern}"

    # -- validation ---------------------------------------------------------------------------
    def staged_conf(self, run: ServiceRun) -> str:
        conf = self.main_conf(run.profile)
        return f"{posixpath.dirname(conf)}/.panel-test-{run.run_id}-{self.name}.conf"

    def validation_jobs(self, run: ServiceRun) -> list[Job]:
        """The first test runs with the staging, in the same round trip."""
        if not run.files and not run.removed:
            return []
        tree = (
            self.main_conf(run.profile),
            self.include_dir(run.profile).rstrip("/"),
            self.pattern,
            self.staged_conf(run),
        )
        return [Job(self.name, self.test_argv(run.profile, self.staged_conf(run)), tree)]

    def validate(self, run: ServiceRun) -> dict[str, str]:
        directory = self.include_dir(run.profile).rstrip("/")
        for path in [*run.files, *run.removed]:
            if posixpath.dirname(path) != directory:
                raise ApplyError(f"{path} is outside {directory}, which {self.name} includes")
        if not run.live_files() and not run.live_removed():
            return {}
        failed: dict[str, str] = {}
        code, out = self._test(run, set())
        while code != 0:
            blamed = self._named_units(run, out, directory) - set(failed)
            if not blamed:
                unit, out = self._bisect(run, failed)
                blamed = {unit}
            for unit in blamed:
                failed[unit] = self._clean(run, out, directory)
                run.log(f"{unit}: {self.label or self.name} refused it: {failed[unit]}")
            code, out = self._test(run, self._paths(run, failed))
        return failed

    def _test(self, run: ServiceRun, extra_held: set[str]) -> tuple[int, str]:
        conf = self.main_conf(run.profile)
        mine = set(run.files) | set(run.removed)
        first = run.jobs.pop(self.name, None)
        if first is not None and not extra_held and not (run.held & mine):
            code, out = first.code, first.output  # run with the staging: still current
        else:
            code, out = run.remote().tree(
                self.name,
                conf,
                self.include_dir(run.profile).rstrip("/"),
                self.pattern,
                self.staged_conf(run),
                self.test_argv(run.profile, self.staged_conf(run)),
                run.held | extra_held,
            )
        if code == MISSING_INCLUDE and "does not include" in out:
            raise ApplyError(
                f"{conf} does not include {self.include_dir(run.profile)}/{self.pattern}: "
                f"add '{self.include_hint(run.profile)}'"
            )
        return code, out

    def _paths(self, run: ServiceRun, units) -> set[str]:
        units = set(units)
        files = [p for p, f in run.files.items() if f.unit in units]
        return {*files, *(p for p, u in run.removed.items() if u in units)}

    def _named_units(self, run: ServiceRun, out: str, directory: str) -> set[str]:
        """Units whose files the tool's message names (through the tree or the staging dir)."""
        names = re.findall(
            re.escape(directory) + r"/\.panel-(?:test|new)-" + run.run_id + r"[^/\s]*/([^\s:\"']+)",
            out,
        )
        found = set()
        for name in names:
            unit = run.unit_of(f"{directory}/{name}")
            if unit and f"{directory}/{name}" in run.live_files():
                found.add(unit)
        return found

    def _bisect(self, run: ServiceRun, failed: dict[str, str]) -> tuple[str, str]:
        """One unit whose change alone makes the test fail (the shortest failing prefix)."""
        candidates = sorted(run.units() - set(failed))
        everything = self._paths(run, [*candidates, *failed])
        code, out = self._test(run, everything)
        if code != 0:
            raise ApplyError(
                f"{self.label or self.name} rejects its live configuration even without this "
                f"run's changes: {self._clean(run, out, self.include_dir(run.profile))}"
            )
        lo, hi, worst = 1, len(candidates), ""
        while lo < hi:  # the prefix of length hi fails, of length lo - 1 passes
            mid = (lo + hi) // 2
            held = self._paths(run, [*candidates[mid:], *failed])
            code, out = self._test(run, held)
            if code != 0:
                hi, worst = mid, out
            else:
                lo = mid + 1
        if not worst:
            _code, worst = self._test(run, self._paths(run, [*candidates[hi:], *failed]))
        return candidates[hi - 1], worst

    def _clean(self, run: ServiceRun, text: str, directory: str) -> str:
        """The tool's words, with staging paths shown as the live paths they stand for."""
        directory = directory.rstrip("/")
        text = re.sub(
            re.escape(directory) + r"/\.panel-(?:test|new)-" + run.run_id + r"[^/\s]*/",
            directory + "/",
            text,
        )
        text = re.sub(
            r"\S*/\.panel-test-" + run.run_id + r"-[\w.-]+\.conf", "the configuration", text
        )
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return "\n".join(lines)[:4000]
