#!/usr/bin/python3
"""panel-app-run: how the hosting panel starts a customer's app (Node.js, Python) on a server.

Written to each server by the apply engine (websites/appsites.py) and named in every app's
supervisord program or systemd unit:

    python3 app-run ENV_FILE REVISION MEMORY_MB -- COMMAND [ARG ...]

It runs as the account's user (the process manager switched to it), in the app's
directory. It reads the app's environment from ENV_FILE (a JSON object, mode 0400, owned
by that user; PORT and HOST=127.0.0.1 are in it), checks that the file is the REVISION the
program was written for (so an app never starts with half an apply), and starts COMMAND
with that environment. No shell is involved: the words are the argv.

MEMORY_MB > 0 (under supervisord, which has no memory limit of its own): the app runs as a
child in this process group and the group's resident memory (RSS, from /proc) is checked
twice a second; past the limit the whole group is killed and this exits 137, so supervisord
restarts the app (autorestart). Under systemd MEMORY_MB is 0 and the unit's MemoryMax= (a
cgroup, enforced by the kernel) limits it instead; this then simply execs COMMAND.

Standard library only: supervisord is itself Python, so python3 is wherever it runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import time

CHECK_EVERY = 0.5
KILLED = 137


def fail(message: str, code: int = 2) -> None:
    print(f"panel-app-run: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def load_env(path: str, revision: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        fail(f"cannot read the environment file {path}: {exc.strerror}")
    if hashlib.sha256(raw).hexdigest()[:16] != revision:
        fail(f"{path} is not the revision {revision} this program was written for")
    env = json.loads(raw)
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        fail(f"{path} is not a JSON object of strings")
    return env


def group_rss_kb(pgid: int) -> int:
    """Resident memory of the app's processes (the group, less this watcher), in kB."""
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    me, total = os.getpid(), 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 21 and int(fields[2]) == pgid:
            total += int(fields[21]) * page_kb
    return total


def kill_group_except_me(pgid: int) -> None:
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            if int(stat[stat.rfind(b")") + 2 :].split()[2]) == pgid:
                os.kill(int(name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def main(argv: list[str]) -> None:
    if len(argv) < 5 or argv[3] != "--":
        fail("usage: app-run ENV_FILE REVISION MEMORY_MB -- COMMAND [ARG ...]")
    env_file, revision, memory, command = argv[0], argv[1], argv[2], argv[4:]
    if not memory.isdigit():
        fail(f"{memory!r} is not a number of MB")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    env.update(load_env(env_file, revision))
    limit_kb = int(memory) * 1024
    if limit_kb == 0:
        try:
            os.execvpe(command[0], command, env)  # noqa: S606 - the app's argv, no shell
        except OSError as exc:
            fail(f"cannot start {command[0]}: {exc.strerror}", 127)
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # a group of our own, so the app's children are counted too
    pgid = os.getpgrp()
    child = os.fork()
    if child == 0:
        try:
            os.execvpe(command[0], command, env)  # noqa: S606 - the app's argv, no shell
        except OSError as exc:
            print(f"panel-app-run: cannot start {command[0]}: {exc.strerror}", file=sys.stderr)
            os._exit(127)

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid == child:
            sys.exit(os.waitstatus_to_exitcode(status) % 256)
        used = group_rss_kb(pgid)
        if used > limit_kb:
            print(
                f"panel-app-run: the app uses {used // 1024} MB, more than its limit of "
                f"{limit_kb // 1024} MB: killed (it will be restarted)",
                file=sys.stderr,
                flush=True,
            )
            kill_group_except_me(pgid)
            os.waitpid(child, 0)
            sys.exit(KILLED)
        time.sleep(CHECK_EVERY)


if __name__ == "__main__":
    main(sys.argv[1:])
