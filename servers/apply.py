"""The apply engine: make a server's managed files match the database, safely.

1. render the desired files (from every provider in settings.PANEL_APPLY_PROVIDERS),
2. read what is really on the server (one sha256sum/stat pass) and compare,
3. stage only what changed and validate the full staged set with the real tools,
   isolating a unit (one site) whose files fail, so it cannot break the others,
4. swap files in atomically and remove files no longer wanted,
5. reload only the services whose files changed, and verify they answer,
6. on any failure after the swap: restore every previous file, reload again, fail.

A manifest (path, hash, mode, owner, service, unit) left on the server records what the panel
wrote; files that differ from it were changed by hand (drift).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.module_loading import import_string

from servers.profile import Profile, fill, profile_for
from servers.transport import Transport, TransportError

CHUNK = 400  # paths per sha256sum/stat command


class ApplyError(TransportError):
    """The apply failed; the server was left (or put back) as it was."""


@dataclass(frozen=True)
class ManagedFile:
    path: str
    content: bytes
    service: str
    unit: str = ""
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class ApplyResult:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    failed_units: dict[str, str] = field(default_factory=dict)
    ok_units: set[str] = field(default_factory=set)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


Log = Callable[[str], None]


def providers():
    return [import_string(path)() for path in settings.PANEL_APPLY_PROVIDERS]


def desired_files(server, profile: Profile) -> dict[str, ManagedFile]:
    files: dict[str, ManagedFile] = {}
    for provider in providers():
        for f in provider.files(server, profile):
            if f.path in files:
                raise ApplyError(f"two managed files want {f.path}")
            files[f.path] = f
    return files


def read_manifest(t: Transport, profile: Profile) -> dict[str, dict]:
    raw = t.read_file(profile.manifest_path)
    if not raw:
        return {}
    try:
        return json.loads(raw)["files"]
    except (ValueError, KeyError) as exc:
        raise ApplyError(f"the manifest {profile.manifest_path} is unreadable: {exc}") from exc


def actual_state(t: Transport, paths: list[str]) -> dict[str, dict]:
    """{path: {sha256, mode, owner, group}} for the paths that exist."""
    state: dict[str, dict] = {}
    for i in range(0, len(paths), CHUNK):
        chunk = paths[i : i + CHUNK]
        sums = t.run(["sha256sum", "--", *chunk], timeout=120)
        for line in sums.stdout.splitlines():
            digest, _, path = line.partition("  ")
            if len(digest) == 64:
                state[path] = {"sha256": digest}
        stats = t.run(["stat", "-c", "%a %U %G %n", "--", *chunk], timeout=120)
        for line in stats.stdout.splitlines():
            mode, owner, group, path = line.split(" ", 3)
            if path in state:
                state[path].update(mode=int(mode, 8), owner=owner, group=group)
    return state


def _differs(f: ManagedFile, actual: dict | None) -> bool:
    if actual is None:
        return True
    return (actual["sha256"], actual.get("mode"), actual.get("owner"), actual.get("group")) != (
        f.sha256,
        f.mode,
        f.owner,
        f.group,
    )


class Engine:
    """One apply (or drift check) of one server through one transport."""

    def __init__(self, server, t: Transport, log: Log = lambda m: None, *, run_id: str = ""):
        self.server, self.t, self.log = server, t, log
        self.profile = profile_for(server)
        self.run_id = run_id or hex(int(time.time() * 1000))[2:]
        self._services: dict[str, object] = {}
        self._dirs: set[str] = set()

    def service(self, name: str):
        if name not in self._services:
            if name in SERVICES:
                self._services[name] = SERVICES[name](self)
            elif name.startswith("php-fpm"):
                self._services[name] = PhpFpmService(self, name.removeprefix("php-fpm"))
            else:
                raise ApplyError(f"no service {name!r} is known to the apply engine")
        return self._services[name]

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        if path not in self._dirs:
            self.t.makedirs(path, mode)
            self._dirs.add(path)

    # -- planning ---------------------------------------------------------------------------
    def plan(self):
        desired = desired_files(self.server, self.profile)
        manifest = read_manifest(self.t, self.profile)
        paths = sorted(set(desired) | set(manifest))
        actual = actual_state(self.t, paths)
        changed = {p: f for p, f in desired.items() if _differs(f, actual.get(p))}
        removed = sorted(p for p in manifest if p not in desired and p in actual)
        return desired, manifest, actual, changed, removed

    # -- apply ------------------------------------------------------------------------------
    def apply(self) -> ApplyResult:
        desired, manifest, actual, changed, removed = self.plan()
        result = ApplyResult(unchanged=len(desired) - len(changed))
        units = {f.unit for f in desired.values() if f.unit}
        self.log(
            f"{len(desired)} managed files: {len(changed)} to write, {len(removed)} to "
            f"remove, {result.unchanged} unchanged."
        )
        if not changed and not removed:
            result.ok_units = units
            self.log("Nothing to do.")
            return result

        touched = {f.service for f in changed.values()} | {
            manifest[p].get("service", "") for p in removed
        }
        touched.discard("")
        failed: dict[str, str] = {}
        for name in sorted(touched):
            self.log(f"Validating {name} with the staged files.")
            failed.update(self.service(name).validate(desired, changed, removed, actual))
        if failed:
            for unit, error in failed.items():
                self.log(f"{unit} failed validation and keeps its previous files: {error}")
            changed = {p: f for p, f in changed.items() if f.unit not in failed}
            # Keep the manifest entries of failed units' files as they were.
            desired = {p: f for p, f in desired.items() if f.unit not in failed}
        result.failed_units = failed
        result.ok_units = units - set(failed)

        backups = self._swap(changed, removed, actual, result)
        try:
            services = sorted(
                {f.service for f in changed.values()}
                | {manifest[p].get("service", "") for p in removed} - {""}
            )
            for name in services:
                self.service(name).reload()
                result.reloaded.append(name)
                self.log(f"Reloaded {name}.")
            for name in services:
                self.service(name).verify()
                self.log(f"{name} answers.")
        except TransportError as exc:
            self.log(f"Rolling back: {exc}")
            self._restore(backups)
            for name in result.reloaded:
                try:
                    self.service(name).reload()
                except TransportError as again:
                    self.log(f"Reloading {name} after the rollback failed too: {again}")
            raise ApplyError(f"{exc} (previous files restored)") from exc

        # Entries not rewritten now (a failed unit's previous files) stay as they were.
        kept = {
            p: manifest[p]
            for p in manifest
            if p not in desired and p not in removed and p in actual
        }
        self._write_manifest(desired, kept)
        return result

    def _swap(self, changed, removed, actual, result) -> dict[str, bytes | None]:
        backups: dict[str, bytes | None] = {}
        try:
            for path, f in sorted(changed.items()):
                backups[path] = self.t.read_file(path) if path in actual else None
                self.makedirs(posixpath.dirname(path))
                self.t.write_file(path, f.content, mode=f.mode, owner=f.owner, group=f.group)
                result.written.append(path)
            for path in removed:
                backups[path] = self.t.read_file(path)
                self.t.remove(path)
                result.removed.append(path)
        except TransportError as exc:
            self._restore(backups)
            raise ApplyError(f"writing files failed: {exc} (previous files restored)") from exc
        self.log(f"Wrote {len(result.written)} files, removed {len(result.removed)}.")
        return backups

    def _restore(self, backups: dict[str, bytes | None]) -> None:
        for path, old in backups.items():
            if old is None:
                self.t.remove(path)
            else:
                self.t.write_file(path, old)

    def _write_manifest(self, desired: dict[str, ManagedFile], extra: dict[str, dict]) -> None:
        files = {
            p: {
                "sha256": f.sha256,
                "mode": f.mode,
                "owner": f.owner,
                "group": f.group,
                "service": f.service,
                "unit": f.unit,
            }
            for p, f in desired.items()
        }
        files.update(extra)
        self.t.makedirs(self.profile.state_dir, 0o700)
        body = json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True)
        self.t.write_file(self.profile.manifest_path, body.encode(), mode=0o600)

    # -- drift ------------------------------------------------------------------------------
    def drift(self) -> list[dict]:
        """Managed files changed or removed by hand since the panel wrote them."""
        manifest = read_manifest(self.t, self.profile)
        if not manifest:
            return []
        actual = actual_state(self.t, sorted(manifest))
        desired = desired_files(self.server, self.profile)
        items = []
        for path, entry in sorted(manifest.items()):
            now = actual.get(path)
            if now is None:
                items.append(
                    {
                        "path": path,
                        "kind": "missing",
                        "expected": entry["sha256"],
                        "actual": "",
                        "diff": "",
                    }
                )
            elif now["sha256"] != entry["sha256"]:
                expected = desired.get(path)
                before = (
                    expected.content if expected and expected.sha256 == entry["sha256"] else b""
                )
                after = self.t.read_file(path) or b""
                diff = "".join(
                    difflib.unified_diff(
                        before.decode(errors="replace").splitlines(True),
                        after.decode(errors="replace").splitlines(True),
                        fromfile=f"{path} (panel)",
                        tofile=f"{path} (on server)",
                    )
                )
                items.append(
                    {
                        "path": path,
                        "kind": "changed",
                        "expected": entry["sha256"],
                        "actual": now["sha256"],
                        "diff": diff[:20000],
                    }
                )
        return items

    # -- staging helpers used by services ---------------------------------------------------
    def stage_dir(self, name: str) -> str:
        return f"{self.profile.staging_dir}/{self.run_id}/{name}"

    def clear_stage(self) -> None:
        self.t.run(["rm", "-rf", "--", f"{self.profile.staging_dir}/{self.run_id}"])


class IncludeDirService:
    """A service whose main config includes a directory of managed ``*.conf`` files.

    Validation copies the live directory to a staging one, overlays the changed files and
    runs the service's own test against a copy of the main config whose include points at
    the staging directory. A unit (one site) whose files fail is tried alone and set aside.
    """

    label = ""

    def __init__(self, engine: Engine):
        self.e = engine
        self.p = engine.profile
        self.mine: dict[str, ManagedFile] = {}

    # What a concrete service says about itself.
    main_conf: str
    include_dir: str
    service_name: str

    def test_argv(self, conf: str) -> list[str]:
        raise NotImplementedError

    def include_hint(self) -> str:
        raise NotImplementedError

    def _include_line(self, conf_text: str) -> str:
        wanted = f"{self.include_dir}/*.conf"
        for line in conf_text.splitlines():
            stripped = line.strip()
            if stripped.startswith("include") and wanted in stripped:
                return line
        raise ApplyError(f"{self.main_conf} does not include {wanted}: add '{self.include_hint()}'")

    def _test_tree(self, name: str, files: dict[str, bytes], drop: set[str]) -> str | None:
        """Copy the live dir, overlay ``files``, drop ``drop``, run the test; its error text."""
        t, live = self.e.t, self.include_dir
        stage = self.e.stage_dir(f"{self.service_name}-{name}")
        t.run(["rm", "-rf", "--", stage])
        t.makedirs(stage, 0o700)
        self.e.makedirs(live)
        t.run(["cp", "-a", "--", f"{live}/.", stage]).check()
        for path, content in files.items():
            t.write_file(f"{stage}/{posixpath.basename(path)}", content)
        for path in drop:
            t.remove(f"{stage}/{posixpath.basename(path)}")
        conf_text = (t.read_file(self.main_conf) or b"").decode()
        line = self._include_line(conf_text)
        staged_text = conf_text.replace(line, line.replace(live, stage), 1)
        staged_conf = f"{posixpath.dirname(self.main_conf)}/.panel-test-{self.e.run_id}-{name}.conf"
        t.write_file(staged_conf, staged_text.encode(), mode=0o600)
        try:
            res = t.run(self.test_argv(staged_conf), timeout=60)
        finally:
            t.remove(staged_conf)
            t.run(["rm", "-rf", "--", stage])
        if res.ok:
            return None
        return _tool_error(res.stderr or res.stdout, stage, live)

    def validate(self, desired, changed, removed, actual) -> dict[str, str]:
        self.mine = {p: f for p, f in changed.items() if f.service == self.service_name}
        for p in self.mine:
            if posixpath.dirname(p) != self.include_dir:
                raise ApplyError(f"{p} is outside {self.include_dir}")
        gone = {p for p in removed if posixpath.dirname(p) == self.include_dir}
        error = self._test_tree("all", {p: f.content for p, f in self.mine.items()}, gone)
        if error is None:
            return {}
        failed: dict[str, str] = {}
        for unit in sorted({f.unit for f in self.mine.values()}):
            files = {p: f.content for p, f in self.mine.items() if f.unit == unit}
            unit_error = self._test_tree("unit", files, set())
            if unit_error and unit:
                failed[unit] = unit_error
        if not failed:
            raise ApplyError(f"{self.label} rejected the new configuration: {error}")
        self.mine = {p: f for p, f in self.mine.items() if f.unit not in failed}
        error = self._test_tree("good", {p: f.content for p, f in self.mine.items()}, gone)
        if error is not None:
            raise ApplyError(f"{self.label} rejected the new configuration: {error}")
        return failed


class NginxService(IncludeDirService):
    """vhosts in profile.nginx_sites_dir, included from nginx.conf."""

    label = service_name = "nginx"

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self.main_conf = self.p.nginx_conf
        self.include_dir = self.p.nginx_sites_dir.rstrip("/")

    def test_argv(self, conf: str) -> list[str]:
        return fill(self.p.nginx_test, conf=conf)

    def include_hint(self) -> str:
        return f"include {self.include_dir}/*.conf;' inside its http block"

    def reload(self) -> None:
        self.e.t.run(self.p.nginx_reload, timeout=60).check()

    def verify(self) -> None:
        # The reload returns before new workers serve; wait briefly for an answer.
        url = self.p.nginx_verify_url
        last = ""
        deadline = time.monotonic() + 3
        while True:
            res = self.e.t.run(
                ["curl", "-sS", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", url], timeout=10
            )
            if res.ok and res.stdout.strip() not in ("", "000"):
                return
            last = (res.stderr or res.stdout).strip()
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise ApplyError(f"nginx does not answer on {url} after the reload: {last}")


class PhpFpmService(IncludeDirService):
    """PHP-FPM pools of one PHP version (service name ``php-fpm8.2``)."""

    def __init__(self, engine: Engine, version: str):
        super().__init__(engine)
        if not re.fullmatch(r"\d+\.\d+", version):
            raise ApplyError(f"{version!r} is not a PHP version")
        self.version = version
        self.label = self.service_name = f"php-fpm{version}"
        self.main_conf = self.p.php_conf.replace("{php}", version)
        self.include_dir = self.p.php_pool_dir.replace("{php}", version).rstrip("/")

    def test_argv(self, conf: str) -> list[str]:
        return fill(self.p.php_test, php=self.version, conf=conf)

    def include_hint(self) -> str:
        return f"include={self.include_dir}/*.conf'"

    def reload(self) -> None:
        self.e.t.run(fill(self.p.php_reload, php=self.version), timeout=60).check()

    def verify(self) -> None:
        """Every pool written now must have its socket after the reload."""
        sockets = []
        for f in self.mine.values():
            m = re.search(r"^\s*listen\s*=\s*(/\S+)\s*$", f.content.decode(), re.M)
            if m:
                sockets.append(m.group(1))
        deadline = time.monotonic() + 5
        missing = sockets
        while missing:
            missing = [s for s in missing if not self.e.t.run(["test", "-S", s]).ok]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if missing:
            raise ApplyError(f"{self.label} did not open {', '.join(missing)} after the reload")


class NftService:
    """One nftables ruleset file (servers.firewall renders it)."""

    def __init__(self, engine: Engine):
        self.e = engine
        self.p = engine.profile

    def validate(self, desired, changed, removed, actual) -> dict[str, str]:
        f = changed.get(self.p.nft_file)
        if f is None:
            return {}
        stage = self.e.stage_dir("nft")
        self.e.t.makedirs(stage, 0o700)
        staged = f"{stage}/ruleset.nft"
        self.e.t.write_file(staged, f.content, mode=0o600)
        try:
            res = self.e.t.run(fill(self.p.nft_test, file=staged), timeout=60)
        finally:
            self.e.t.run(["rm", "-rf", "--", stage])
        if not res.ok:
            raise ApplyError(
                f"nft rejected the firewall rules: {(res.stderr or res.stdout).strip()}"
            )
        return {}

    def reload(self) -> None:
        if self.e.t.read_file(self.p.nft_file) is None:
            # The last rule was deleted: take the panel's table out of the kernel too.
            res = self.e.t.run(["nft", "delete", "table", "inet", "hosting_panel"], timeout=60)
            if not res.ok and "No such file" not in res.stderr:
                res.check()
            return
        self.e.t.run(fill(self.p.nft_apply, file=self.p.nft_file), timeout=60).check()

    def verify(self) -> None:
        listed = self.e.t.run(["nft", "list", "table", "inet", "hosting_panel"], timeout=30)
        wanted = self.e.t.read_file(self.p.nft_file) is not None
        if listed.ok != wanted:
            raise ApplyError(
                "the nftables table hosting_panel is "
                f"{'missing' if wanted else 'still loaded'} after the reload"
            )


SERVICES = {"nginx": NginxService, "nftables": NftService}


def _tool_error(text: str, stage: str, live: str) -> str:
    """The tool's own words, with staging paths shown as the live paths they stand for."""
    return text.replace(stage, live).strip()[:4000]
