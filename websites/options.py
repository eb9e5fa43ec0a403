"""Typed site options: what a site's owner may change in its vhost, as checked values.

Stored in ``Website.options`` as a JSON object holding only the options that differ from
their defaults (so a new option needs no migration), read back through ``parse_options``,
which checks every value again: the vhost is rendered from a ``SiteOptions``, never from
text a customer typed. Each value is either a number, a choice, or a string matched whole by
a strict pattern that leaves nothing nginx could read as a new line, block or argument.

To add an option: a field on ``SiteOptions`` with its default, its check in
``parse_options`` (and ``_entry`` for lists of objects), its lines in ``websites.vhost``,
and a strategy in tests/integration/test_site_options.py. See docs/websites.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from websites.nginx import PROBE_PATH
from websites.tls import CHALLENGE_PATH
from websites.validators import (
    parse_upstream_url,
    upstream_host_problem,
    validate_auth_user,
    validate_bcrypt_hash,
    validate_header_name,
    validate_header_value,
    validate_url_path,
)

WWW_REDIRECTS = ("", "to_apex", "to_www")
ERROR_CODES = (400, 401, 403, 404, 405, 410, 429, 500, 502, 503, 504)
MAX_HEADERS = 20
MAX_PROXIES = 10
MAX_BODY_MB = 2048
MAX_CACHE_DAYS = 365
MAX_HSTS_SECONDS = 2 * 365 * 86400
MAX_AUTH_PATHS = 10
MAX_AUTH_USERS = 50
# nginx checks a basic-auth password with crypt(3) in its worker on every request, so the
# cost is paid per request (8: ~15 ms here; Apache's htpasswd -B uses 5).
BCRYPT_ROUNDS = 8
PASSWORD_BYTES = (8, 72)  # bcrypt reads at most 72 bytes
PANEL_PREFIX = PROBE_PATH.rsplit("/", 1)[0]


@dataclass(frozen=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True)
class ErrorPage:
    code: int
    path: str


@dataclass(frozen=True)
class Proxy:
    """Requests below ``path`` go to ``upstream`` (http(s)://PUBLIC-IP[:PORT][/PATH])."""

    path: str
    upstream: str


@dataclass(frozen=True)
class AuthUser:
    name: str
    hash: str  # bcrypt ($2b$/$2y$): the password itself is never stored


@dataclass(frozen=True)
class AuthPath:
    """Requests below ``path`` need one of ``users`` (HTTP basic auth); the content is what
    the site serves there anyway (files, PHP, its app or a proxied location)."""

    path: str
    users: tuple[AuthUser, ...]


@dataclass(frozen=True)
class SiteOptions:
    www_redirect: str = ""  # "to_apex": www.X -> X; "to_www": X -> www.X (both site names)
    https_redirect: bool = False  # rendered once the site's certificate is live (websites/tls.py)
    hsts_max_age: int = 0  # seconds; 0: no Strict-Transport-Security (HTTPS only)
    headers: tuple[Header, ...] = ()  # extra response headers
    gzip: bool = False
    static_cache_days: int = 0  # 0: off; else Expires/Cache-Control on static files
    max_body_mb: int = 0  # 0: the server's default (nginx: 1 MB)
    error_pages: tuple[ErrorPage, ...] = ()
    proxies: tuple[Proxy, ...] = ()
    auth_paths: tuple[AuthPath, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """What is stored: the options that differ from their defaults."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    """JSON's own types (lists, not tuples), so stored and fresh values compare equal."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


DEFAULTS = SiteOptions()
FIELDS = [f.name for f in dataclasses.fields(SiteOptions)]


class _Errors:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.messages.append(f"{where}: {message}")


def _bool(data: dict, name: str, errors: _Errors) -> bool:
    value = data.get(name, getattr(DEFAULTS, name))
    if not isinstance(value, bool):
        errors.add(name, "must be true or false")
        return False
    return value


def _int(data: dict, name: str, high: int, errors: _Errors) -> int:
    value = data.get(name, getattr(DEFAULTS, name))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        errors.add(name, f"must be a whole number from 0 to {high}")
        return 0
    return value


def _entries(data: dict, name: str, keys: tuple[str, ...], most: int, errors: _Errors) -> list:
    value = data.get(name, [])
    if not isinstance(value, list) or len(value) > most:
        errors.add(name, f"must be a list of at most {most} entries")
        return []
    good = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != set(keys):
            errors.add(f"{name}[{i}]", f"must be an object with exactly: {', '.join(keys)}")
            continue
        good.append((i, item))
    return good


def _check(where: str, check, value, errors: _Errors) -> bool:
    try:
        check(value)
    except ValidationError as exc:
        errors.add(where, " ".join(exc.messages))
        return False
    return True


def _path(where: str, value, errors: _Errors) -> bool:
    if not _check(where, validate_url_path, value, errors):
        return False
    if f"{value}/".startswith(f"{PANEL_PREFIX}/"):
        errors.add(where, f"{PANEL_PREFIX}/ belongs to the panel")
        return False
    if f"{value}/".startswith(CHALLENGE_PATH):
        errors.add(where, f"{CHALLENGE_PATH} serves ACME challenges (certificates)")
        return False
    return True


def parse_options(
    data: Any, *, names: tuple[str, ...] = (), own_addresses: frozenset[str] = frozenset()
) -> SiteOptions:
    """Check a stored or submitted options object whole; ``names`` (the site's domain and
    aliases) and ``own_addresses`` (its server's) enable the checks that need the site.
    Raises a ValidationError listing every problem as ``option: why``."""
    if data in (None, ""):
        data = {}
    if not isinstance(data, dict):
        raise ValidationError("Options must be an object.")
    errors = _Errors()
    unknown = sorted(set(data) - set(FIELDS), key=str)
    if unknown:
        errors.add(", ".join(map(str, unknown)), f"unknown option (known: {', '.join(FIELDS)})")

    www = data.get("www_redirect", "")
    if www not in WWW_REDIRECTS:
        errors.add("www_redirect", "must be '', 'to_apex' or 'to_www'")
        www = ""
    elif www and names and not www_pairs(names, www):
        other = "www.NAME" if www == "to_apex" else "NAME without www."
        errors.add("www_redirect", f"no name of this site has its {other} among its names")

    https = _bool(data, "https_redirect", errors)

    headers, seen = [], set()
    for i, item in _entries(data, "headers", ("name", "value"), MAX_HEADERS, errors):
        where = f"headers[{i}]"
        ok = _check(f"{where}.name", validate_header_name, item["name"], errors)
        ok = _check(f"{where}.value", validate_header_value, item["value"], errors) and ok
        if ok and item["name"].lower() in seen:
            errors.add(f"{where}.name", f"{item['name']} is given twice")
        elif ok:
            seen.add(item["name"].lower())
            headers.append(Header(item["name"], item["value"]))

    pages, codes = [], set()
    for i, item in _entries(data, "error_pages", ("code", "path"), len(ERROR_CODES), errors):
        where = f"error_pages[{i}]"
        code = item["code"]
        if isinstance(code, bool) or code not in ERROR_CODES:
            errors.add(f"{where}.code", f"must be one of {', '.join(map(str, ERROR_CODES))}")
        elif code in codes:
            errors.add(f"{where}.code", f"{code} is given twice")
        elif _path(f"{where}.path", item["path"], errors):
            codes.add(code)
            pages.append(ErrorPage(code, item["path"]))

    proxies, paths = [], set()
    for i, item in _entries(data, "proxies", ("path", "upstream"), MAX_PROXIES, errors):
        where = f"proxies[{i}]"
        if not _path(f"{where}.path", item["path"], errors):
            continue
        if item["path"] in paths:
            errors.add(f"{where}.path", f"{item['path']} is given twice")
            continue
        upstream = _upstream(f"{where}.upstream", item["upstream"], own_addresses, errors)
        if upstream:
            paths.add(item["path"])
            proxies.append(Proxy(item["path"], upstream))

    options = SiteOptions(
        www_redirect=www,
        https_redirect=https,
        hsts_max_age=_int(data, "hsts_max_age", MAX_HSTS_SECONDS, errors),
        headers=tuple(headers),
        gzip=_bool(data, "gzip", errors),
        static_cache_days=_int(data, "static_cache_days", MAX_CACHE_DAYS, errors),
        max_body_mb=_int(data, "max_body_mb", MAX_BODY_MB, errors),
        error_pages=tuple(pages),
        proxies=tuple(proxies),
        auth_paths=tuple(_auth_paths(data, errors)),
    )
    if errors.messages:
        raise ValidationError(errors.messages)
    return options


def _auth_paths(data: dict, errors: _Errors) -> list[AuthPath]:
    found, paths = [], set()
    for i, item in _entries(data, "auth_paths", ("path", "users"), MAX_AUTH_PATHS, errors):
        where = f"auth_paths[{i}]"
        path = item["path"]
        if not _path(f"{where}.path", path, errors):
            continue
        if path == "/":
            errors.add(f"{where}.path", "protect a path below / (the probe and ACME need /)")
            continue
        if path in paths:
            errors.add(f"{where}.path", f"{path} is given twice")
            continue
        users, names = [], set()
        entries = _entries(item, "users", ("name", "hash"), MAX_AUTH_USERS, errors)
        for j, user in entries:
            at = f"{where}.users[{j}]"
            ok = _check(f"{at}.name", validate_auth_user, user["name"], errors)
            ok = _check(f"{at}.hash", validate_bcrypt_hash, user["hash"], errors) and ok
            if ok and user["name"] in names:
                errors.add(f"{at}.name", f"{user['name']} is given twice")
            elif ok:
                names.add(user["name"])
                users.append(AuthUser(user["name"], user["hash"]))
        if isinstance(item["users"], list) and not item["users"]:
            errors.add(f"{where}.users", "at least one user (or remove the protected path)")
            continue
        paths.add(path)
        found.append(AuthPath(path, tuple(users)))
    return found


def hash_password(password: str) -> str:
    """A bcrypt hash nginx's crypt(3) (libxcrypt) accepts."""
    import bcrypt

    check_password(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()


def check_password(password) -> None:
    low, high = PASSWORD_BYTES
    if not isinstance(password, str) or not low <= len(password.encode()) <= high:
        raise ValidationError(f"A password has {low} to {high} bytes.")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise ValidationError("A password cannot hold control characters.")


def with_password_hashes(submitted: Any, stored: Any) -> Any:
    """Submitted options with each basic-auth user's ``password`` turned into its hash.

    A user given without a password keeps the hash stored for the same path and name, so
    options read back (hashes left out) can be sent again unchanged. A hash is accepted only
    when it is the stored one: passwords come in as passwords. Anything malformed is left as
    it is for ``parse_options`` to refuse."""
    if not isinstance(submitted, dict) or not isinstance(submitted.get("auth_paths"), list):
        return submitted
    known = {}
    for entry in (stored or {}).get("auth_paths", []) if isinstance(stored, dict) else []:
        for user in entry.get("users", []) if isinstance(entry, dict) else []:
            if isinstance(user, dict):
                known[(str(entry.get("path")), str(user.get("name")))] = user.get("hash")
    out, problems = [], []
    for i, entry in enumerate(submitted["auth_paths"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("users"), list):
            out.append(entry)
            continue
        users = []
        for j, user in enumerate(entry["users"]):
            at = f"auth_paths[{i}].users[{j}]"
            if not isinstance(user, dict) or not set(user) <= {"name", "password", "hash"}:
                users.append(user)
                continue
            key = (entry.get("path"), user.get("name"))
            old = known.get(key) if all(isinstance(k, str) for k in key) else None
            if "password" in user:
                try:
                    users.append(
                        {"name": user.get("name"), "hash": hash_password(user["password"])}
                    )
                except ValidationError as exc:
                    problems.append(f"{at}.password: {' '.join(exc.messages)}")
                continue
            if "hash" in user and user["hash"] != old:
                problems.append(f"{at}.hash: give the password, not a hash")
            elif old is None:
                problems.append(f"{at}.password: a new user needs a password")
            else:
                users.append({"name": user.get("name"), "hash": old})
        out.append({**entry, "users": users})
    if problems:
        raise ValidationError(problems)
    return {**submitted, "auth_paths": out}


def without_hashes(options: Any, mark: bool = False) -> Any:
    """Options as shown (API, audit): basic-auth users by name only. With ``mark``, a short
    digest of the hash stands in, so the audit shows that a password changed."""
    import hashlib

    if not isinstance(options, dict) or not isinstance(options.get("auth_paths"), list):
        return options
    shown = []
    for entry in options["auth_paths"]:
        if not isinstance(entry, dict):
            continue
        users = []
        for user in entry.get("users", []) if isinstance(entry.get("users"), list) else []:
            if not isinstance(user, dict):
                continue
            item = {"name": user.get("name")}
            if mark and isinstance(user.get("hash"), str):
                item["password"] = hashlib.sha256(user["hash"].encode()).hexdigest()[:8]
            users.append(item)
        shown.append({"path": entry.get("path"), "users": users})
    return {**options, "auth_paths": shown}


def _upstream(where: str, value, own: frozenset[str], errors: _Errors) -> str:
    try:
        scheme, host, port, path = parse_upstream_url(value)
    except ValidationError as exc:
        errors.add(where, " ".join(exc.messages))
        return ""
    problem = upstream_host_problem(host, hostnames=False, refused=own)
    if problem:
        errors.add(where, f"{problem}: upstreams are public IP addresses")
        return ""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}{f':{port}' if port else ''}{path}"


def www_pairs(names: tuple[str, ...], www_redirect: str) -> list[tuple[str, str]]:
    """(name, the name it redirects to) for every name the www redirect moves."""
    present = set(names)
    pairs = []
    for name in names:
        if www_redirect == "to_apex" and name.startswith("www.") and name[4:] in present:
            pairs.append((name, name[4:]))
        elif www_redirect == "to_www" and f"www.{name}" in present:
            pairs.append((name, f"www.{name}"))
    return pairs
