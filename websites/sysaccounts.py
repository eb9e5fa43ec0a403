"""System accounts on servers: one Linux user per customer per server, named after the
user's account name (accounts/naming.py), its home ``<home_base>/<name>`` owned by root (the
SFTP chroot) with ``sites/<domain>/public`` (web roots), ``logs/`` and ``.ssh/`` below it.

Every change runs the constant script ``account.sh`` over the server's transport with
validated arguments (argv lists; passwords and keys on stdin, never in argv).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from django.core.exceptions import ValidationError

from accounts.naming import validate_account_name
from servers.engine import profile_for
from servers.transport import Transport, TransportError
from websites.validators import validate_domain

SCRIPT = Path(__file__).with_name("account.sh").read_text()
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
DEFAULT_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Coming soon</title></head>'
    "<body><h1>This site is ready</h1><p>Upload your files to <code>public/</code> over "
    "SFTP.</p></body></html>\n"
)


class AccountError(Exception):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def home_of(server, name: str) -> str:
    validate_account_name(name)
    return f"{profile_for(server).webroot_base.rstrip('/')}/{name}"


def site_dir(server, name: str, domain: str) -> str:
    return f"{home_of(server, name)}/sites/{domain}"


def validate_ssh_key(value: str) -> str:
    """One OpenSSH public key line (type, base64 body of that type, optional plain comment)."""
    value = (value or "").strip()
    if not value:
        return ""
    parts = value.split()
    if "\n" in value or "\r" in value or not 2 <= len(parts) <= 3:
        raise ValidationError("Give one OpenSSH public key line: TYPE KEY [COMMENT].")
    kind, body = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise ValidationError(f"{kind[:40]!r} is not an SSH key type ({', '.join(KEY_TYPES[:3])}).")
    try:
        raw = base64.b64decode(body, validate=True)
    except ValueError as exc:
        raise ValidationError("The key is not valid base64.") from exc
    if len(raw) < 4 or raw[4 : 4 + len(kind)] != kind.encode():
        raise ValidationError("The key's body does not match its type.")
    if len(parts) == 3 and not re.fullmatch(r"[A-Za-z0-9@._+-]{1,100}", parts[2]):
        raise ValidationError("The key's comment may hold letters, digits and @._+- only.")
    return " ".join(parts)


def validate_password(value: str) -> None:
    if not isinstance(value, str) or not 12 <= len(value) <= 128:
        raise ValidationError("Use a password of 12 to 128 characters.")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("The password may not contain control characters or newlines.")


def run(
    t: Transport,
    server,
    cmd: str,
    name: str,
    *extra: str,
    stdin: bytes | None = None,
    timeout: int = 60,
) -> str:
    """One account.sh command; its words on failure."""
    for value in extra[:1]:
        if cmd in ("site", "rmsite", "tail"):
            validate_domain(value)
    argv = ["sh", "-c", SCRIPT, "panel-account", cmd, name, home_of(server, name), *extra]
    try:
        result = t.run(argv, timeout=timeout, stdin=stdin)
    except TransportError as exc:
        raise AccountError(str(exc), retryable=exc.retryable) from exc
    if result.code != 0:
        words = (result.stderr or result.stdout).strip().splitlines()
        raise AccountError(
            f"{cmd} {name}: " + (" ".join(words[-3:]) if words else f"exit {result.code}")
        )
    return result.stdout


def ensure(t, server, name: str) -> None:
    run(t, server, "ensure", name)


def ensure_site(t, server, name: str, domain: str, *, app: bool = False) -> None:
    """The site's directory and web root (and, for app sites, ``app/``, where it runs)."""
    extra = ("app",) if app else ()
    run(t, server, "site", name, domain, *extra, stdin=DEFAULT_PAGE.encode())


def remove_site(t, server, name: str, domain: str) -> None:
    run(t, server, "rmsite", name, domain)


def lock(t, server, name: str) -> None:
    run(t, server, "lock", name)


def unlock(t, server, name: str) -> None:
    run(t, server, "unlock", name)


def remove(t, server, name: str) -> None:
    run(t, server, "remove", name, timeout=300)


def set_password(t, server, name: str, password: str) -> None:
    validate_password(password)
    run(t, server, "password", name, stdin=password.encode() + b"\n")


def set_key(t, server, name: str, key_line: str) -> None:
    line = validate_ssh_key(key_line)
    run(t, server, "key", name, stdin=(line + "\n").encode() if line else b"")


def disk_used_mb(t, server, name: str) -> int:
    out = run(t, server, "du", name, timeout=600).strip()
    try:
        return (int(out) + 1023) // 1024
    except ValueError as exc:
        raise AccountError(f"du gave {out[:80]!r}") from exc


def tail_logs(t, server, name: str, domain: str, lines: int = 50) -> dict[str, list[str]]:
    out = run(t, server, "tail", name, domain, str(int(lines)))
    logs: dict[str, list[str]] = {"access": [], "error": []}
    current = None
    for line in out.splitlines():
        if line.startswith("@@panel-log "):
            current = line.split()[1]
            continue
        if current in logs:
            logs[current].append(line)
    return logs
