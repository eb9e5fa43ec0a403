"""The restic adapter: commands for one repository, run on a server through its transport.

Every command is an argv list. Secrets never reach an argv: the repository password, the
SFTP key and the database credentials are files of mode 0600 in a directory of the
panel's own on the server (``<state_dir>/backups/<key>``), written before the commands and
removed after them. The SFTP connection is restic's ``-o sftp.command=`` built from a
validated argv (a pinned host key, batch mode, no user ssh configuration).

Errors are ``ResticError`` (with ``retryable``), in restic's own words.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from servers.engine import profile_for
from servers.transport import Transport, TransportError

log = logging.getLogger(__name__)

TIMEOUT = 6 * 3600
# Runs restic with stderr folded into stdout and its exit status as the last line, so a
# streamed run (which hands over output lines only) still learns how restic ended.
# One status line a second is all the progress shown needs: with --json restic would
# otherwise print 60 a second, each formatted, sent over SSH and parsed.
WRAP = 'RESTIC_PROGRESS_FPS=1 restic "$@" 2>&1; echo "panel-restic-exit $?"'
# One round trip sets the directory up: secrets an interrupted Operation could not remove
# go (one Operation at a time uses the directory: the target's lock), a fresh secrets
# directory is made and each secret written, mode 0600, from one base64 line of stdin
# (printf is the shell's builtin: no secret is ever on an argv).
OPEN = r"""
set -eu
umask 077
dir=$1 box=$2
shift 2
mkdir -p -m 700 -- "$dir"
rm -rf -- "$dir"/secrets-*
mkdir -m 700 -- "$box"
for name; do
  IFS= read -r line
  printf '%s' "$line" | base64 -d > "$box/$name"
done
"""


class ResticError(Exception):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def work_dir(server, key: str) -> str:
    return f"{profile_for(server).state_dir.rstrip('/')}/backups/{key}"


def known_hosts_line(host: str, port: int, key: str) -> str:
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {' '.join(key.split()[:2])}\n"


@dataclass
class Summary:
    snapshot_id: str = ""
    files: int = 0
    size_bytes: int = 0
    bytes_added: int = 0
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _tail(lines: list[str], n: int = 6) -> str:
    text = "\n".join(line for line in lines if line.strip())[-2000:]
    return "\n".join(text.splitlines()[-n:]) or "no output"


class Repository:
    """One target's repository as seen from one server, with its secret files set up
    (``open``) and removed (``close``)."""

    def __init__(
        self, target, transport: Transport, server, key: str, *, directory: str = ""
    ) -> None:
        self.target, self.t = target, transport
        # ``directory``: the panel's own host (backup_panel), with no server profile.
        self.dir = directory or work_dir(server, key)
        self.secrets = f"{self.dir}/secrets-{secrets.token_hex(4)}"
        self.cache = f"{self.dir}/cache"
        # Secret files to write with the others when opening (name: content), those
        # written, and paths below ``dir`` removed with the secrets when closing.
        self.extra: dict[str, str] = {}
        self.written: dict[str, str] = {}
        self.scratch: list[str] = []

    # -------------------------------------------------------------- setup and teardown

    def open(self) -> Repository:
        if self.target.kind == "s3":  # checked before any secret is written
            from backups.models import S3_SECRET_KEY, S3_SECRET_RULE

            if not S3_SECRET_KEY.fullmatch(self.target.s3_secret_key or ""):
                raise ResticError(
                    f"The S3 secret key cannot go in restic's credentials file: {S3_SECRET_RULE}"
                )
        if not self.target.password:
            raise ResticError("The target has no repository password.")
        files = {"password": self.target.password}
        if self.target.kind == "sftp":
            files["ssh_key"] = (self.target.sftp_private_key or "").strip() + "\n"
            files["known_hosts"] = known_hosts_line(
                self.target.sftp_host, self.target.sftp_port, self.target.sftp_host_key
            )
        if self.target.kind == "s3":
            # restic's S3 backend reads the keys from a credentials file named by the
            # environment (never an argv); validated single-line values, see the model.
            files["s3_credentials"] = (
                "[default]\n"
                f"aws_access_key_id = {self.target.s3_access_key}\n"
                f"aws_secret_access_key = {self.target.s3_secret_key}\n"
            )
        files.update(self.extra)
        lines = b"".join(base64.b64encode(v.encode()) + b"\n" for v in files.values())
        argv = ["sh", "-c", OPEN, "open", self.dir, self.secrets, *files]
        res = self.t.run(argv, stdin=lines, timeout=120)
        if res.code != 0:
            raise ResticError(f"Could not set up {self.dir}: {res.stderr.strip()[-500:]}")
        self.written = dict(files)
        return self

    def close(self) -> None:
        try:
            self.t.run(["rm", "-rf", "--", self.secrets, *self.scratch])
        except TransportError:  # the connection broke: the next open removes them
            log.warning("could not remove %s; the next Operation will", self.secrets)

    def __enter__(self) -> Repository:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def secret_file(self, name: str, content: str) -> str:
        """A secret file (written once: the same name and content again is not sent)."""
        path = f"{self.secrets}/{name}"
        if self.written.get(name) != content:
            self.t.write_file(path, content.encode(), mode=0o600)
            self.written[name] = content
        return path

    # -------------------------------------------------------------- commands

    def ssh_options(self) -> list[str]:
        return [
            "-F",
            "/dev/null",
            "-i",
            f"{self.secrets}/ssh_key",
            "-o",
            f"UserKnownHostsFile={self.secrets}/known_hosts",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
        ]

    def ssh_argv(self) -> list[str]:
        port = str(int(self.target.sftp_port))
        user, host = self.target.sftp_user, self.target.sftp_host
        return ["ssh", *self.ssh_options(), "-p", port, "-l", user, host]

    def argv(self, *args: str) -> list[str]:
        base = [
            "-r",
            self.target.repository,
            "--password-file",
            f"{self.secrets}/password",
            "--cache-dir",
            self.cache,
        ]
        if self.target.kind == "sftp":
            base += ["-o", "sftp.command=" + shlex.join([*self.ssh_argv(), "-s", "sftp"])]
        return [*base, *args]

    def env(self) -> list[str]:
        """``env`` arguments for restic: for S3, the credentials file, with any keys of
        the server's own environment unset (they would win over the file)."""
        if self.target.kind != "s3":
            return []
        return [
            "env",
            "-u",
            "AWS_ACCESS_KEY_ID",
            "-u",
            "AWS_SECRET_ACCESS_KEY",
            "-u",
            "AWS_SESSION_TOKEN",
            "-u",
            "AWS_PROFILE",
            f"AWS_SHARED_CREDENTIALS_FILE={self.secrets}/s3_credentials",
        ]

    def command(self, *args: str) -> list[str]:
        return [*self.env(), "restic", *self.argv(*args)]

    def run(self, *args: str, timeout: float = 600) -> str:
        res = self.t.run(self.command(*args), timeout=timeout)
        if res.code != 0:
            raise error_of(res.code, (res.stderr or res.stdout).splitlines())
        return res.stdout

    def stream(self, *args: str, on_line: Callable[[str], None], timeout: float = TIMEOUT):
        """Run restic, each output line to ``on_line``; returns (exit code, all lines)."""
        seen: list[str] = []
        code = [None]

        def line(text: str) -> None:
            if text.startswith("panel-restic-exit "):
                code[0] = int(text.split()[1])
                return
            seen.append(text)
            on_line(text)

        self.t.stream_lines(
            [*self.env(), "sh", "-c", WRAP, "restic", *self.argv(*args)],
            timeout=timeout,
            on_line=line,
        )
        if code[0] is None:
            raise ResticError("restic did not finish: " + _tail(seen), retryable=True)
        return code[0], seen

    # -------------------------------------------------------------- operations

    def init_or_verify(self) -> str:
        """``restic init``; a repository that exists already must open with the password."""
        res = self.t.run(self.command("init"), timeout=300)
        if res.code == 0:
            return "initialised"
        text = (res.stderr or res.stdout).lower()
        if "already exists" in text or "already initialized" in text:
            self.run("cat", "config", timeout=120)
            return "opened"
        raise error_of(res.code, (res.stderr or res.stdout).splitlines())

    def snapshots(self, tag: str = "") -> list[dict]:
        args = ["snapshots", "--json"] + (["--tag", tag] if tag else [])
        return json.loads(self.run(*args, timeout=300) or "[]") or []

    def backup(
        self,
        paths: Iterable[str],
        *,
        host: str,
        tags: Iterable[str],
        parent: str = "",
        on_status: Callable[[dict], None] = lambda s: None,
    ) -> Summary:
        args = ["backup", "--json", "--host", host]
        for tag in tags:
            args += ["--tag", tag]
        if parent:
            args += ["--parent", parent]
        summary = Summary()

        def line(text: str) -> None:
            try:
                msg = json.loads(text)
            except ValueError:
                return
            if not isinstance(msg, dict):
                return
            kind = msg.get("message_type")
            if kind == "status":
                on_status(msg)
            elif kind == "summary":
                summary.snapshot_id = str(msg.get("snapshot_id") or "")
                summary.files = int(msg.get("total_files_processed") or 0)
                summary.size_bytes = int(msg.get("total_bytes_processed") or 0)
                summary.bytes_added = int(msg.get("data_added") or 0)
                summary.duration_s = float(msg.get("total_duration") or 0)
            elif kind == "error":
                err = msg.get("error") or {}
                item = msg.get("item") or ""
                text = err.get("message") if isinstance(err, dict) else str(err)
                summary.warnings.append(f"{item}: {text}"[:500])

        code, lines = self.stream(*args, "--", *paths, on_line=line)
        # 3: a snapshot was made but some files could not be read (warnings say which).
        if code not in (0, 3) or not summary.snapshot_id:
            raise error_of(code, [x for x in lines if not x.startswith("{")] or lines)
        return summary

    def forget(self, tag: str, keep_daily: int, keep_weekly: int) -> list[str]:
        """Apply retention to the snapshots tagged ``tag``, prune, and return the ids of
        the snapshots removed (restic prints its decision as JSON on the first line, and
        nothing at all when it keeps everything)."""
        args = ["forget", "--json", "--tag", tag, "--group-by", "tags"]
        args += ["--keep-daily", str(keep_daily)]
        if keep_weekly:
            args += ["--keep-weekly", str(keep_weekly)]
        out = self.run(*args, "--prune", timeout=TIMEOUT)
        first = out.split("\n", 1)[0]
        if not first.startswith("["):
            return []
        try:
            groups = json.loads(first)
        except ValueError as exc:
            raise ResticError(f"restic forget said: {first[:300]}") from exc
        return [str(s.get("id") or "") for g in groups or [] for s in g.get("remove") or []]

    def ls(self, snapshot: str, path: str) -> tuple[int, int]:
        """(files, bytes) below ``path`` in a snapshot: the dry-run summary of a restore."""
        out = self.run("ls", "--json", "--recursive", snapshot, path, timeout=600)
        files = size = 0
        for text in out.splitlines():
            try:
                node = json.loads(text)
            except ValueError:
                continue
            if node.get("struct_type") == "node" and node.get("type") == "file":
                files += 1
                size += int(node.get("size") or 0)
        return files, size

    def restore(self, snapshot: str, target_dir: str, include: str) -> None:
        self.run("restore", snapshot, "--target", target_dir, "--include", include, timeout=TIMEOUT)

    def free_bytes(self) -> int | None:
        """Free space where the repository lives (df on the server; the SFTP host's
        statvfs through sftp's df). None for S3, which has no such figure."""
        if self.target.kind == "s3":
            return None
        if self.target.kind == "sftp":
            port = str(int(self.target.sftp_port))
            who = f"{self.target.sftp_user}@{self.target.sftp_host}"
            argv = ["sftp", *self.ssh_options(), "-P", port, "-b", "-", who]
            res = self.t.run(argv, stdin=f"df {self.target.path}\n".encode(), timeout=60)
            if res.code != 0:
                return None
            rows = [r.split() for r in res.stdout.splitlines()]
            rows = [r for r in rows if len(r) >= 3 and r[0].isdigit() and r[2].isdigit()]
            return int(rows[-1][2]) * 1024 if rows else None
        res = self.t.run(["df", "-B1", "--output=avail", "--", self.target.path], timeout=60)
        lines = res.stdout.split()
        return int(lines[-1]) if res.code == 0 and lines[-1:] and lines[-1].isdigit() else None

    def key_list(self) -> list[dict]:
        """``restic key list --json``: id, current (the key the password opened)."""
        return json.loads(self.run("key", "list", "--json", timeout=300) or "[]") or []

    def add_key(self, new_password: str) -> str:
        """Add a key for ``new_password`` (a 0600 file, removed with the secrets); returns
        the new key's id."""
        path = self.secret_file("new_password", new_password)
        before = {k.get("id") for k in self.key_list()}
        self.run("key", "add", "--new-password-file", path, timeout=300)
        added = [k.get("id") for k in self.key_list() if k.get("id") not in before]
        if len(added) != 1:
            raise ResticError("restic key add did not add exactly one key.")
        return str(added[0])

    def use_password(self, password: str) -> None:
        """From now on open the repository with ``password``."""
        self.t.write_file(f"{self.secrets}/password", password.encode(), mode=0o600)
        self.written["password"] = password


# S3's own words (AWS and compatible services) for keys it does not accept.
S3_AUTH_FAILED = (
    "signature we calculated does not match",  # SignatureDoesNotMatch: a wrong secret key
    "access key id you provided does not exist",  # InvalidAccessKeyId: unknown or revoked
    "signaturedoesnotmatch",
    "invalidaccesskeyid",
)


def error_of(code: int | None, lines: list[str]) -> ResticError:
    text = _tail(lines)
    low = text.lower()
    if "wrong password" in low:
        return ResticError("The repository password is wrong (restic: " + text + ")")
    if any(words in low for words in S3_AUTH_FAILED):
        return ResticError(
            "S3 authentication failed: the storage refused the target's access key or "
            "secret key (restic: " + text + ")"
        )
    if "access denied" in low:
        return ResticError(
            "S3 denied access with the target's keys: they lack a permission on the bucket "
            "(restic: " + text + ")"
        )
    retryable = any(
        w in low
        for w in ("connection refused", "timed out", "no route", "unable to start the sftp")
    )
    return ResticError(f"restic failed (exit {code}): {text}", retryable=retryable)
