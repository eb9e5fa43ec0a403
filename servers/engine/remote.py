"""One apply run's calls to the helper on the server (remote.sh): each call is one round trip.

``stage`` uploads every new file in one tar through stdin and has the server confirm content,
mode and owner and fsync them; ``tree`` validates through a symlink tree; ``swap`` moves the
staged files into place beside hard-linked backups and records the pending reload first;
``rollback`` puts backups back; ``commit`` writes the manifest and clears the pending reload.
``swap``, ``rollback`` and ``commit`` run to their end on the server even if the connection
drops, so the server is never left between two of their steps by the panel going away.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from servers.engine.contracts import ApplyError, Job, ManagedFile, Step, StepResult
from servers.transport import CommandResult, Transport

SCRIPT = Path(__file__).with_name("remote.sh").read_text()
EXIT_MARK = re.compile(r"^@@panel-exit (\d+)$", re.M)
JOB_MARK = re.compile(r"^@@panel-job (\S+) (\d+)$", re.M)
STEP_MARK = re.compile(r"^@@panel-step (\d+) (\d+)$", re.M)
LOCKED = 75


class StagingFailed(ApplyError):
    """Staging stopped before anything was swapped (a full disk, a bad directory): the
    run's half-written staging and its lock are left for ``abort``."""


class LockedError(ApplyError):
    """Another run holds the server-side lock."""

    def __init__(self, holder: str, text: str) -> None:
        super().__init__(
            f"another apply (run {holder}) is working on this server ({text}); try again when "
            "it has finished",
            retryable=True,
        )
        self.holder = holder


@dataclass
class ServerStatus:
    pending_run: str
    pending_services: list[str]
    lock_holder: str
    shards: list[str]
    last_committed: str = ""
    running: bool = False


@dataclass
class Batch:
    """What ``go`` runs: the services to reload (recorded as pending first), the held-back
    paths, the steps, and the manifest to commit (None: do not commit)."""

    services: list[str]
    held: set[str]
    steps: list[Step]
    shards: dict[str, bytes] | None
    drop: list[str]

    def add_to(self, tar: tarfile.TarFile, prefix: str) -> None:
        _add(tar, f"{prefix}services", "".join(f"{x}\n" for x in self.services).encode(), 0o600)
        _add(tar, f"{prefix}held", "".join(f"{p}\n" for p in sorted(self.held)).encode(), 0o600)
        for i, step in enumerate(self.steps):
            argv = b"\0".join(a.encode() for a in step.argv) + b"\0"
            _add(tar, f"{prefix}steps/{i:03d}", argv, 0o600)
            if step.stdin:
                _add(tar, f"{prefix}steps/{i:03d}.in", step.stdin, 0o600)
        if self.shards is not None:
            _add(tar, f"{prefix}commit", b"", 0o600)
            _add(tar, f"{prefix}drop", "".join(f"{x}\n" for x in self.drop).encode(), 0o600)
            for shard, body in sorted(self.shards.items()):
                _add(tar, f"{prefix}manifest/{shard}.tsv", body, 0o600)


@dataclass
class BatchResult:
    """What ``go`` did: swapped, the steps that ran (the last one failed if stopped),
    committed."""

    swapped: bool
    steps: list[StepResult]
    committed: bool
    output: str

    @property
    def stopped(self) -> bool:
        return bool(self.steps) and not self.steps[-1].ok


@dataclass
class FileState:
    sha256: str
    mode: int
    owner: str
    group: str


class RemoteRun:
    def __init__(self, t: Transport, state_dir: str, run_id: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{6,32}", run_id):
            raise ApplyError(f"{run_id!r} is not a run id")
        self.t, self.state, self.run_id = t, state_dir.rstrip("/"), run_id

    @property
    def run_dir(self) -> str:
        return f"{self.state}/runs/{self.run_id}"

    def call(self, cmd: str, *args: str, stdin: bytes = b"", timeout: float = 300) -> CommandResult:
        argv = ["sh", "-c", SCRIPT, "panel-apply", cmd, self.state, self.run_id, *args]
        return self.t.run(argv, stdin=stdin, timeout=timeout)

    def _checked(self, cmd: str, *args: str, stdin: bytes = b"", what: str) -> CommandResult:
        res = self.call(cmd, *args, stdin=stdin)
        if res.code == LOCKED:
            text = res.stderr.strip()
            m = re.search(r"locked by (\S+)", text)
            raise LockedError(m.group(1) if m else "?", text)
        if not res.ok:
            raise ApplyError(f"{what} failed on the server: {_clip(res.stderr or res.stdout)}")
        return res

    # -- the run's steps ---------------------------------------------------------------------
    def stage(
        self,
        writes: list[ManagedFile],
        removes: list[str],
        *,
        jobs: list[Job] = (),
        take_over: str = "",
        then: Batch | None = None,
    ) -> tuple[dict[str, StepResult], BatchResult | None]:
        """Put every file beside its target, have the server confirm what landed, then run
        the validation jobs; their results by job name. With ``then``, a server whose jobs
        all passed goes on with that batch (swap, steps, commit) in the same round trip."""
        bundle = self._bundle(writes, removes, list(jobs), then)
        timeout = 300 + (sum(step.timeout for step in then.steps) if then else 0)
        res = self.call("stage", take_over, stdin=bundle, timeout=timeout)
        head, went, tail = res.stdout.partition("@@panel-go\n")
        if res.code == LOCKED:
            m = re.search(r"locked by (\S+)", res.stderr)
            raise LockedError(m.group(1) if m else "?", res.stderr.strip())
        if not went and not res.ok:
            raise StagingFailed(f"staging the new files failed on the server: {_clip(res.stderr)}")
        results, start = {}, 0
        body = head.split("\n", 1)[1] if "\n" in head else ""
        for m in JOB_MARK.finditer(body):
            results[m.group(1)] = StepResult(int(m.group(2)), body[start : m.start()])
            start = m.end() + 1
        missing = [j.name for j in jobs if j.name not in results]
        if missing:
            raise ApplyError(f"the validation of {', '.join(missing)} gave no result")
        if not went:
            return results, None
        if res.code != 0 and "@@panel-swapped" not in tail:
            text = tail.replace("@@panel-end", "").strip() or res.stderr
            raise ApplyError(f"swapping the files in failed on the server: {_clip(text)}")
        return results, _parse_batch(tail, res.code)

    def go(self, batch: Batch) -> BatchResult:
        """Swap, run the steps in order (stopping at the first failure) and, when the batch
        carries the manifest, commit if every step passed: one round trip."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            batch.add_to(tar, "")
        timeout = 120 + sum(step.timeout for step in batch.steps)
        res = self.call("go", *batch.services, stdin=buf.getvalue(), timeout=timeout)
        if res.code == LOCKED:
            raise LockedError("?", res.stderr.strip())
        if not res.ok and "@@panel-swapped" not in res.stdout:
            text = res.stdout.replace("@@panel-end", "").strip() or res.stderr
            raise ApplyError(f"swapping the files in failed on the server: {_clip(text)}")
        return _parse_batch(res.stdout, res.code)

    def batch_outcome(self, wait: float = 300) -> BatchResult | None:
        """After the connection dropped during ``go``: wait for the batch to end on the
        server and return how it ended (None: it cannot be known)."""
        deadline = time.monotonic() + wait
        while True:
            status = self.status()
            if status.last_committed == self.run_id:
                return BatchResult(swapped=True, steps=[], committed=True, output="")
            log = self.call("batch-log").stdout
            end = re.search(r"^@@panel-end (\d+)$", log, re.M)
            if end:
                return _parse_batch(log, int(end.group(1)))
            if not status.running or time.monotonic() > deadline:
                return None
            time.sleep(0.2)

    def tree(
        self,
        name: str,
        main_conf: str,
        include_dir: str,
        pattern: str,
        staged_conf: str,
        argv: list[str],
        held: set[str],
    ) -> tuple[int, str]:
        """Run ``argv`` against a tree of the live files with this run's changes (minus the
        held-back paths); returns the tool's exit code and output."""
        stdin = "".join(f"{p}\n" for p in sorted(held)).encode()
        res = self._checked(
            "tree",
            name,
            main_conf,
            include_dir,
            pattern,
            staged_conf,
            "--",
            *argv,
            stdin=stdin,
            what=f"preparing the {name} validation",
        )
        m = EXIT_MARK.search(res.stdout)
        if m is None:
            raise ApplyError(f"the {name} validation gave no result: {_clip(res.stdout)}")
        return int(m.group(1)), res.stdout[: m.start()]

    def swap(self, services: list[str], held: set[str]) -> None:
        """Swap the files in (the careful path: reloads and the commit follow one by one)."""
        stdin = "".join(f"{p}\n" for p in sorted(held)).encode()
        self._checked("swap", *services, stdin=stdin, what="swapping the files in")

    def rollback(self, paths: set[str] | None = None) -> None:
        stdin = "".join(f"{p}\n" for p in sorted(paths or ())).encode()
        self._checked("rollback", stdin=stdin, what="restoring the previous files")

    def commit(self, shards: dict[str, bytes], drop: list[str]) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for shard, body in sorted(shards.items()):
                _add(tar, f"manifest/{shard}.tsv", body, 0o600)
        self._checked("commit", *drop, stdin=buf.getvalue(), what="writing the manifest")

    def abort(self) -> None:
        self._checked("abort", what="cleaning up the staged files")

    # -- reading the server -----------------------------------------------------------------
    def status(self) -> ServerStatus:
        res = self.call("status")
        text = res.stdout
        pending = _section(text, "pending").split()
        lock = _section(text, "lock").split()
        last = _section(text, "last").split()
        shards = _section(text, "shards").split()
        return ServerStatus(
            pending_run=pending[0] if pending else "",
            pending_services=pending[1:],
            lock_holder=lock[0] if lock else "",
            shards=[x for x in shards if re.fullmatch(r"[0-9a-f]{2}", x)],
            last_committed=last[0] if len(last) == 2 and last[1] == "committed" else "",
            running=bool(_section(text, "running").strip()),
        )

    def hash(self, paths: list[str]) -> dict[str, FileState]:
        """Content hash, mode and owner of the paths that exist (one round trip)."""
        if not paths:
            return {}
        res = self.call("hash", stdin="".join(f"{p}\n" for p in paths).encode())
        if not res.ok:
            raise ApplyError(f"reading the files on the server failed: {_clip(res.stderr)}")
        found: dict[str, FileState] = {}
        for line in res.stdout.splitlines():
            parts = line.split(" ", 4)
            if len(parts) == 5 and len(parts[0]) == 64:
                found[parts[4]] = FileState(parts[0], int(parts[1], 8), parts[2], parts[3])
        return found

    def manifest(self) -> str:
        return self.call("manifest").stdout

    # -- helpers ------------------------------------------------------------------------------
    def _bundle(
        self, writes: list[ManagedFile], removes: list[str], jobs: list[Job], then: Batch | None
    ) -> bytes:
        lines = [
            "\t".join(["w", f.sha256, f"{f.mode:o}", f.owner, f.group, f.path]) for f in writes
        ]
        lines += ["\t".join(["r", "-", "-", "-", "-", p]) for p in removes]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            listing = "".join(f"{line}\n" for line in lines).encode()
            _add(tar, f"{self.run_dir.lstrip('/')}/list", listing, 0o600)
            for i, job in enumerate(jobs):
                if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", job.name):
                    raise ApplyError(f"{job.name!r} is not a job name")
                where = f"{self.run_dir.lstrip('/')}/jobs/{i:03d}-{job.name}"
                if job.tree:
                    values = [*job.tree, *job.argv]
                    if any("\n" in v or not v for v in values):
                        raise ApplyError(f"job {job.name!r} has an empty or multi-line value")
                    _add(tar, f"{where}.tree", "".join(f"{v}\n" for v in values).encode(), 0o600)
                else:
                    argv = b"\0".join(a.encode() for a in job.argv) + b"\0"
                    _add(tar, f"{where}.cmd", argv, 0o600)
                    if job.stdin:
                        _add(tar, f"{where}.in", job.stdin, 0o600)
            if then is not None:
                then.add_to(tar, f"{self.run_dir.lstrip('/')}/go/")
            staged_dirs = set()
            for f in writes:
                directory, name = posixpath.split(f.path)
                staged = f"{directory.lstrip('/')}/.panel-new-{self.run_id}"
                if staged not in staged_dirs:
                    staged_dirs.add(staged)
                    info = tarfile.TarInfo(staged)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, int(time.time())
                    info.uname = info.gname = "root"
                    tar.addfile(info)
                _add(tar, f"{staged}/{name}", f.content, f.mode, f.owner, f.group)
        return buf.getvalue()


def _add(
    tar: tarfile.TarFile, name: str, body: bytes, mode: int, owner="root", group="root"
) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(body), mode, int(time.time())
    info.uname, info.gname = owner, group
    tar.addfile(info, io.BytesIO(body))


def _parse_batch(out: str, code: int) -> BatchResult:
    swapped = "@@panel-swapped" in out
    results, start = [], out.find("@@panel-swapped") + len("@@panel-swapped\n")
    for m in STEP_MARK.finditer(out):
        results.append(StepResult(int(m.group(2)), out[start : m.start()]))
        start = m.end() + 1
    committed = "@@panel-committed" in out
    if code != 0 and not committed:  # died after the swap (committing, most likely)
        tail = out[start:].replace("@@panel-end", "").strip()
        results.append(StepResult(code, _clip(tail or f"exit code {code}")))
    return BatchResult(swapped, results, committed, out)


def _section(text: str, name: str) -> str:
    """The lines after ``name:`` up to the next ``word:`` header of the status output."""
    m = re.search(rf"^{name}:\n(.*?)(?=^\w+:\n|\Z)", text, re.M | re.S)
    return m.group(1) if m else ""


def _clip(text: str, limit: int = 4000) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " ..."
