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

from servers.engine.contracts import ApplyError, ManagedFile
from servers.transport import CommandResult, Transport

SCRIPT = Path(__file__).with_name("remote.sh").read_text()
EXIT_MARK = re.compile(r"^@@panel-exit (\d+)$", re.M)
LOCKED = 75


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
    def stage(self, writes: list[ManagedFile], removes: list[str], *, take_over: str = "") -> None:
        """Put every file beside its target and have the server confirm what landed."""
        bundle = self._bundle(writes, removes)
        self._checked("stage", take_over, stdin=bundle, what="staging the new files")

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
        pending = text.split("pending:\n", 1)[-1].split("lock:\n", 1)[0].split()
        lock = text.split("lock:\n", 1)[-1].split("shards:\n", 1)[0].split()
        shards = text.split("shards:\n", 1)[-1].split() if "shards:\n" in text else []
        return ServerStatus(
            pending_run=pending[0] if pending else "",
            pending_services=pending[1:],
            lock_holder=lock[0] if lock else "",
            shards=[x for x in shards if re.fullmatch(r"[0-9a-f]{2}", x)],
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
    def _bundle(self, writes: list[ManagedFile], removes: list[str]) -> bytes:
        lines = [
            "\t".join(["w", f.sha256, f"{f.mode:o}", f.owner, f.group, f.path]) for f in writes
        ]
        lines += ["\t".join(["r", "-", "-", "-", "-", p]) for p in removes]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            listing = "".join(f"{line}\n" for line in lines).encode()
            _add(tar, f"{self.run_dir.lstrip('/')}/list", listing, 0o600)
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


def _clip(text: str, limit: int = 4000) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " ..."
