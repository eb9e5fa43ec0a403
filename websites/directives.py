"""Raw nginx directives: for administrators only, parsed, checked, and rendered from the parse.

The text is read by a real nginx configuration parser (crossplane), never by regular
expressions. What reaches the vhost is not the text itself but the parsed statements written
out again (``render_directives``): every argument is checked to be one plain token and quoted
where needed, so the file nginx reads has exactly the structure that was checked. The checks:

- the braces stay inside the site's ``server`` block; at its top level only ``location``
  blocks (a directive there would also apply to the panel's probe, or clash with the
  template's own);
- only the directives in ``ALLOWED``, each with its arguments checked: documents only below
  the site's own directory, logs only as the site's files in the server's nginx log
  directory, upstreams only on public IP addresses (host names for administrators' proxy
  sites), no unix sockets, no ``PHP_VALUE``/``PHP_ADMIN_VALUE``, known variables only;
- locations nest the way nginx allows, never twice, never where the template or the site's
  options already put one, never on the probe's path.

Everything else (``include``, ``load_module``, ``*_temp_path``, ``server``, ``listen``,
``server_name``, ``if``, ...) is refused with the line and the reason.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import crossplane
from crossplane.errors import NgxParserBaseException
from django.core.exceptions import ValidationError

from websites.nginx import PROBE_PATH
from websites.validators import (
    HEADER_NAME,
    parse_upstream_url,
    upstream_host_problem,
    validate_header_name,
)

MAX_TEXT = 20_000
MAX_STATEMENTS = 300
MAX_DEPTH = 3  # nested locations
PANEL_PREFIX = PROBE_PATH.rsplit("/", 1)[0]  # /.well-known/hosting-panel
NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
# Arguments written without quotes when they only hold these characters.
BARE = re.compile(r"[A-Za-z0-9_./:=~^*@%+,!?&|()\[\]<>$-]+")
# A backslash escapes only characters a regular expression needs; \n, \t, \" and the like
# (which nginx turns into other characters) are refused.
ESCAPABLE = set(".-/?()[]{}*+|^$\\dDwWsSbB0123456789")
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|([0-9]))")
KNOWN_VARIABLES = {
    "args",
    "binary_remote_addr",
    "content_length",
    "content_type",
    "document_root",
    "document_uri",
    "fastcgi_path_info",
    "fastcgi_script_name",
    "host",
    "hostname",
    "https",
    "is_args",
    "proxy_add_x_forwarded_for",
    "proxy_host",
    "proxy_port",
    "query_string",
    "realpath_root",
    "remote_addr",
    "remote_port",
    "request_filename",
    "request_id",
    "request_method",
    "request_uri",
    "scheme",
    "server_name",
    "server_port",
    "server_protocol",
    "uri",
}
VARIABLE_PREFIXES = ("arg_", "cookie_", "http_", "sent_http_", "upstream_http_")
SIZE = re.compile(r"[0-9]{1,9}[kKmMgG]?")
TIME = re.compile(r"[0-9]{1,9}(ms|s|m|h|d|w|M|y)?")
MIME = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}/[a-z0-9*][a-z0-9.+*-]{0,63}|\*")
FILE_NAME = re.compile(r"[A-Za-z0-9._/-]{1,200}")
PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/-]{0,400}")
PASSES = ("proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass")

# Directives refused with a reason of their own (everything not in ALLOWED is refused too).
REFUSED = {
    "include": "it reads files the panel does not manage",
    "load_module": "it loads code into nginx",
    "server": "a site has exactly one server block, the panel's",
    "http": "raw directives go inside the site's server block",
    "events": "raw directives go inside the site's server block",
    "upstream": "upstreams are written in proxy_pass itself",
    "map": "raw directives go inside the site's server block",
    "geo": "raw directives go inside the site's server block",
    "split_clients": "raw directives go inside the site's server block",
    "stream": "raw directives go inside the site's server block",
    "mail": "raw directives go inside the site's server block",
    "listen": "the panel decides where a site listens",
    "server_name": "a site's names are its domain and aliases",
    "if": "use a location, try_files, return or rewrite instead",
    "set": "variables are not set by raw directives",
    "ssl_certificate": "certificates are managed by the panel",
    "ssl_certificate_key": "certificates are managed by the panel",
    "resolver": "upstreams are IP addresses or resolved when nginx loads",
}
REFUSED_SUFFIXES = {
    "_temp_path": "temporary-file paths belong to the server: nginx's master (root) would "
    "create and chown the directory",
    "_by_lua": "it runs code inside nginx",
    "_by_lua_block": "it runs code inside nginx",
    "_by_lua_file": "it runs code inside nginx",
}
REFUSED_PREFIXES = {
    "perl": "it runs code inside nginx",
    "lua": "it runs code inside nginx",
    "js_": "it runs code inside nginx",
    "ssl_": "TLS is managed by the panel",
}


@dataclass(frozen=True)
class SiteContext:
    """What the checks need to know about the site the directives are for."""

    domain: str
    site_dir: str  # document roots and auth files live below it
    log_dir: str  # the server's nginx log directory
    hostname_upstreams: bool = False  # an administrator's proxy site
    own_addresses: frozenset[str] = frozenset()  # the site's server
    taken_locations: frozenset[tuple[str, str]] = frozenset()  # the template's and options'


@dataclass(frozen=True)
class Location:
    kind: str  # "=", "prefix", "~", "~*", "@"
    uri: str

    @property
    def regex(self) -> bool:
        return self.kind in ("~", "~*")


SERVER_LEVEL = None  # the "location" a top-level statement is in


def location_of(args: list[str]) -> Location | None:
    """The location block ``location ARGS`` opens, the way nginx reads them."""
    if len(args) == 2:
        mod, uri = args
        kinds = {"=": "=", "^~": "prefix", "~": "~", "~*": "~*"}
        return Location(kinds[mod], uri) if mod in kinds and uri else None
    if len(args) != 1 or not args[0]:
        return None
    value = args[0]
    for mod, kind in (("=", "="), ("^~", "prefix"), ("~*", "~*"), ("~", "~"), ("@", "@")):
        if value.startswith(mod) and len(value) > len(mod):
            return Location(kind, value[len(mod) :] if kind != "@" else value)
    return Location("prefix", value)


def location_key(loc: Location) -> tuple[str, str]:
    return (loc.kind, loc.uri)


# -- tokens -----------------------------------------------------------------------------------


def _token_problem(arg: str) -> str:
    if len(arg) > 1000:
        return "an argument is longer than 1,000 characters"
    for ch in arg:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return f"an argument contains the control character U+{ord(ch):04X}"
    if '"' in arg:
        return 'an argument contains a double quote (")'
    i = 0
    while i < len(arg):
        if arg[i] == "\\":
            if i + 1 >= len(arg) or arg[i + 1] not in ESCAPABLE:
                return "a backslash may only escape a character of a regular expression"
            i += 2
            continue
        i += 1
    return ""


def _variables_problem(arg: str) -> str:
    for match in VARIABLE.finditer(arg):
        name = match.group(1) or match.group(2) or ""
        if name and name not in KNOWN_VARIABLES and not name.startswith(VARIABLE_PREFIXES):
            return f"${name} is not a variable raw directives may use"
    rest = VARIABLE.sub("", arg)
    if "$" in rest:
        return "a '$' that does not start a variable"
    return ""


def _no_variables(arg: str) -> str:
    return "variables are not allowed in this argument" if "$" in arg else ""


def quote(arg: str) -> str:
    """One argument as nginx reads it back as exactly one token (``_token_problem`` passed)."""
    return arg if BARE.fullmatch(arg) and "${" not in arg else f'"{arg}"'


# -- argument checks --------------------------------------------------------------------------

Check = Callable[[list[str], "Location | None", "SiteContext | None"], str]


def _count(args: list[str], low: int, high: int) -> str:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        return f"takes {want} argument(s)"
    return ""


def _one_of(*values: str) -> Check:
    def check(args, loc, site):
        if len(args) != 1 or args[0] not in values:
            return f"takes one of: {', '.join(values)}"
        return ""

    return check


def _pattern(pattern: re.Pattern, what: str, low: int = 1, high: int = 1) -> Check:
    def check(args, loc, site):
        problem = _count(args, low, high)
        if problem:
            return problem
        bad = [a for a in args if not pattern.fullmatch(a)]
        return f"{bad[0]!r} is not {what}" if bad else ""

    return check


FLAG = _one_of("on", "off")


def _regex_problem(value: str) -> str:
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError):
        return f"{value!r} is not a regular expression"
    return ""


def _interpolated(args: list[str]) -> str:
    for arg in args:
        problem = _variables_problem(arg)
        if problem:
            return problem
    return ""


def _path_below(value: str, base: str, what: str) -> str:
    if "$" in value:
        return f"{what} cannot contain variables"
    if not PLAIN_PATH.fullmatch(value) or "//" in value:
        return f"{value!r} is not a plain absolute path"
    if any(part in (".", "..") for part in value.split("/")):
        return f"{value!r} cannot contain '.' or '..'"
    if base and posixpath.normpath(value) != base and not value.startswith(base.rstrip("/") + "/"):
        return f"{value} is outside {base}"
    return ""


def check_location(args, loc, site):
    new = location_of(args)
    if new is None:
        return "takes an optional modifier (= ^~ ~ ~*) and a path, a regular expression or @name"
    if new.regex:
        return _regex_problem(new.uri)
    if new.kind == "@":
        return "" if re.fullmatch(r"@[A-Za-z0-9_-]{1,64}", new.uri) else "a bad @name"
    if not new.uri.startswith("/"):
        return f"{new.uri!r} does not start with '/'"
    if "$" in new.uri:
        return "a location path cannot contain '$'"
    return ""


def check_add_header(args, loc, site):
    problem = _count(args, 2, 3)
    if problem:
        return problem
    if len(args) == 3 and args[2] != "always":
        return "the third argument can only be 'always'"
    try:
        validate_header_name(args[0])
    except ValidationError as exc:
        return exc.messages[0]
    return _interpolated(args[1:2])


def check_expires(args, loc, site):
    problem = _count(args, 1, 2)
    if problem:
        return problem
    if len(args) == 2 and args[0] != "modified":
        return "takes 'modified' and a time, or one time"
    value = args[-1]
    if value in ("off", "epoch", "max") and len(args) == 1:
        return ""
    return "" if re.fullmatch(r"-?" + TIME.pattern, value) else f"{value!r} is not a time"


def check_error_page(args, loc, site):
    if len(args) < 2:
        return "takes status codes and a page"
    *codes, target = args
    if codes and codes[-1].startswith("="):
        if not re.fullmatch(r"=([1-5][0-9][0-9])?", codes[-1]):
            return f"{codes[-1]!r} is not '=' or '=CODE'"
        codes = codes[:-1]
    if not codes:
        return "takes at least one status code"
    for code in codes:
        if not re.fullmatch(r"[45][0-9][0-9]", code) or code == "499":
            return f"{code!r} is not an error status (400-599, not 499)"
    if not re.match(r"(/|@|https?://|\$)", target):
        return f"{target!r} is not a page: start with '/', '@' or http(s)://"
    return _interpolated([target])


def check_try_files(args, loc, site):
    if len(args) < 2:
        return "takes files and a fallback"
    last = args[-1]
    if last.startswith("=") and not re.fullmatch(r"=[0-9]{1,3}", last):
        return f"{last!r} is not '=CODE'"
    return _interpolated(args)


def check_return(args, loc, site):
    problem = _count(args, 1, 2)
    if problem:
        return problem
    url = re.match(r"(https?://|\$scheme)", args[0])
    if len(args) == 1 and not re.fullmatch(r"[0-9]{1,3}", args[0]) and not url:
        return "takes a status code, a code and text, or a URL starting with http(s)://"
    if len(args) == 2 and not re.fullmatch(r"[0-9]{1,3}", args[0]):
        return f"{args[0]!r} is not a status code"
    return _interpolated(args[-1:])


def check_rewrite(args, loc, site):
    problem = _count(args, 2, 3)
    if problem:
        return problem
    if len(args) == 3 and args[2] not in ("last", "break", "redirect", "permanent"):
        return "the flag is one of last, break, redirect, permanent"
    return _regex_problem(args[0]) or _interpolated(args[1:2])


def check_index(args, loc, site):
    if not args:
        return "takes file names"
    bad = [a for a in args if not FILE_NAME.fullmatch(a)]
    return f"{bad[0]!r} is not a plain file name" if bad else ""


def check_root(args, loc, site):
    if len(args) != 1:
        return "takes one path"
    return _path_below(args[0], site.site_dir if site else "", "a document root")


def check_access_log(args, loc, site):
    if args == ["off"]:
        return ""
    problem = _count(args, 1, 2)
    if problem:
        return problem
    if len(args) == 2 and args[1] != "combined":
        return "the only log format here is 'combined'"
    return _log_path(args[0], site)


def check_error_log(args, loc, site):
    problem = _count(args, 1, 2)
    if problem:
        return problem
    levels = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
    if len(args) == 2 and args[1] not in levels:
        return f"the level is one of {', '.join(levels)}"
    return _log_path(args[0], site)


def _log_path(value: str, site: SiteContext | None) -> str:
    # The master process opens logs as root: a path the site's owner can write to (its own
    # directory) would let a symlink there point nginx at any file. Logs live in the
    # server's nginx log directory, named after the site.
    problem = _path_below(value, site.log_dir if site else "", "a log path")
    if problem or site is None:
        return problem
    name = value[len(site.log_dir.rstrip("/")) + 1 :]
    if "/" in name or not name.startswith(f"{site.domain}.") or not name.endswith(".log"):
        return f"a log file is {site.log_dir}/{site.domain}.NAME.log"
    return ""


def check_allow(args, loc, site):
    if args == ["all"]:
        return ""
    if len(args) != 1 or "%" in args[0] or args[0] != args[0].strip():
        return "takes 'all' or one address or network"
    try:
        ipaddress.ip_network(args[0], strict=False)
    except ValueError:
        return f"{args[0]!r} is not an address or network"
    return ""


def check_auth_basic(args, loc, site):
    if len(args) != 1:
        return "takes 'off' or a realm"
    return _no_variables(args[0])


def check_auth_basic_user_file(args, loc, site):
    if len(args) != 1:
        return "takes one path"
    return _path_below(args[0], site.site_dir if site else "", "a password file")


def check_header_pair(args, loc, site):
    problem = _count(args, 2, 2)
    if problem:
        return problem
    if not HEADER_NAME.fullmatch(args[0]):
        return f"{args[0]!r} is not a header name"
    return _interpolated(args[1:])


def check_fastcgi_param(args, loc, site):
    problem = _count(args, 2, 3)
    if problem:
        return problem
    if len(args) == 3 and args[2] != "if_not_empty":
        return "the third argument can only be 'if_not_empty'"
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", args[0]):
        return f"{args[0]!r} is not a parameter name"
    if args[0].upper() in ("PHP_VALUE", "PHP_ADMIN_VALUE"):
        return f"{args[0]} changes PHP's settings (auto_prepend_file, open_basedir ...)"
    return _interpolated(args[1:2])


def check_pass(args, loc, site, *, name: str):
    if len(args) != 1:
        return "takes one upstream"
    value = args[0]
    if value.startswith("unix:"):
        return "unix sockets are refused: they reach other sites' PHP pools and local services"
    if "$" in value:
        return "an upstream cannot contain variables (it would be chosen per request)"
    schemes = {
        "proxy_pass": ("http", "https"),
        "grpc_pass": ("grpc", "grpcs"),
        "uwsgi_pass": ("uwsgi", "suwsgi"),
    }.get(name, ())
    bare = "://" not in value
    if bare and name == "proxy_pass":
        return "the upstream starts with http:// or https://"
    try:
        _scheme, host, port, path = parse_upstream_url(
            f"tcp://{value}" if bare else value, schemes=("tcp",) if bare else schemes
        )
    except ValidationError as exc:
        return exc.messages[0]
    if not host:
        return "the upstream has no host"
    if bare and port is None:
        return "the upstream is HOST:PORT"
    if path and name != "proxy_pass":
        return "the upstream cannot have a path"
    if path and loc is not None and (loc.regex or loc.kind == "@"):
        return "in a regular-expression or named location the upstream cannot have a path"
    problem = upstream_host_problem(
        host,
        hostnames=site.hostname_upstreams if site else True,
        refused=site.own_addresses if site else frozenset(),
    )
    return problem


def _pass_check(name: str) -> Check:
    return lambda args, loc, site: check_pass(args, loc, site, name=name)


def check_gzip_types(args, loc, site):
    if not args:
        return "takes MIME types"
    if len(set(args)) != len(args):
        return "a MIME type is listed twice"
    bad = [a for a in args if not MIME.fullmatch(a) or a == "text/html"]
    return f"{bad[0]!r} is not a MIME type (text/html is always compressed)" if bad else ""


ALLOWED: dict[str, Check] = {
    "location": check_location,
    "add_header": check_add_header,
    "allow": check_allow,
    "deny": check_allow,
    "alias": check_root,
    "root": check_root,
    "index": check_index,
    "try_files": check_try_files,
    "return": check_return,
    "rewrite": check_rewrite,
    "error_page": check_error_page,
    "internal": lambda args, loc, site: _count(args, 0, 0),
    "expires": check_expires,
    "etag": FLAG,
    "autoindex": FLAG,
    "charset": _one_of("utf-8", "off"),
    "default_type": _pattern(MIME, "a MIME type"),
    "client_max_body_size": _pattern(SIZE, "a size (e.g. 10m)"),
    "limit_rate": _pattern(SIZE, "a size (e.g. 100k)"),
    "gzip": FLAG,
    "gzip_vary": FLAG,
    "gzip_comp_level": _pattern(re.compile(r"[1-9]"), "a level from 1 to 9"),
    "gzip_min_length": _pattern(SIZE, "a size"),
    "gzip_types": check_gzip_types,
    "access_log": check_access_log,
    "error_log": check_error_log,
    "auth_basic": check_auth_basic,
    "auth_basic_user_file": check_auth_basic_user_file,
    "satisfy": _one_of("any", "all"),
    "proxy_pass": _pass_check("proxy_pass"),
    "proxy_set_header": check_header_pair,
    "proxy_http_version": _one_of("1.0", "1.1"),
    "proxy_buffering": FLAG,
    "proxy_redirect": _one_of("off", "default"),
    "proxy_connect_timeout": _pattern(TIME, "a time (e.g. 30s)"),
    "proxy_read_timeout": _pattern(TIME, "a time (e.g. 30s)"),
    "proxy_send_timeout": _pattern(TIME, "a time (e.g. 30s)"),
    "fastcgi_pass": _pass_check("fastcgi_pass"),
    "fastcgi_param": check_fastcgi_param,
    "fastcgi_index": _pattern(re.compile(r"[A-Za-z0-9._-]{1,64}"), "a file name"),
    "fastcgi_read_timeout": _pattern(TIME, "a time (e.g. 30s)"),
    "uwsgi_pass": _pass_check("uwsgi_pass"),
    "scgi_pass": _pass_check("scgi_pass"),
    "grpc_pass": _pass_check("grpc_pass"),
}
REPEATABLE = {
    "location",
    "add_header",
    "allow",
    "deny",
    "index",
    "return",
    "rewrite",
    "error_page",
    "access_log",
    "error_log",
    "proxy_set_header",
    "fastcgi_param",
}


def refusal(name: str) -> str:
    """Why ``name`` may not be used ("" when it is on the allow-list)."""
    if name in ALLOWED:
        return ""
    if name in REFUSED:
        return REFUSED[name]
    for suffix, why in REFUSED_SUFFIXES.items():
        if name.endswith(suffix):
            return why
    for prefix, why in REFUSED_PREFIXES.items():
        if name.startswith(prefix):
            return why
    return "it is not on the allow-list of raw directives (docs/websites.md)"


# -- parsing ----------------------------------------------------------------------------------


def _crossplane(text: str, parse: bool):
    with tempfile.NamedTemporaryFile("w", suffix=".conf", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        if not parse:
            return list(crossplane.lex(f.name))
        return crossplane.parse(
            # Contexts and arguments are judged by the allow-list below, with reasons.
            f.name,
            single=True,
            comments=False,
            strict=False,
            check_ctx=False,
            check_args=False,
        )


def _where(exc_or_error) -> str:
    return re.sub(r" in \S+?(:\d+)?$", "", str(exc_or_error))


def parse_directives(text: str) -> list[dict]:
    """The statements of ``text`` as they stand inside the site's server block (crossplane's
    form: ``{"directive", "line", "args", "block"?}``), or a ValidationError with a line."""
    if not isinstance(text, str):
        raise ValidationError("Raw directives are text.")
    if len(text) > MAX_TEXT:
        raise ValidationError(f"Raw directives are at most {MAX_TEXT:,} characters.")
    for number, line in enumerate(text.split("\n"), 1):
        for ch in line:
            if ch != "\t" and unicodedata.category(ch) in _REFUSED_CATEGORIES:
                raise ValidationError(
                    f"Line {number}: remove the control or invisible character U+{ord(ch):04X}."
                )
    try:
        tokens = _crossplane(text, parse=False)
    except NgxParserBaseException as exc:
        why = _where(exc.strerror)
        if why.startswith('unexpected "}"'):
            why = (
                "this '}' closes the site's server block; raw directives stay inside it "
                "(a '}' without its '{')"
            )
        elif "end of file" in why:
            why = "a '{' is never closed"
        raise ValidationError(f"Line {exc.lineno}: {why}.") from exc
    code = [t for t in tokens if t[2] or not t[0].startswith("#")]
    if code and (code[-1][2] or code[-1][0] not in (";", "}")):
        raise ValidationError(
            f"Line {code[-1][1]}: the last statement is not ended by ';' (or a quote is open)."
        )
    # Wrapped as in a real file; the first line of the text stays line 1.
    payload = _crossplane("http{server{" + text + "\n}}\n", parse=True)
    if payload["errors"]:
        messages = [f"Line {e['line']}: {_where(e['error'])}." for e in payload["errors"]]
        raise ValidationError(messages)
    # Text such as ";;{;};" parses into blocks without names that end the server block
    # early: anything but exactly the one server block we wrapped is malformed.
    parsed = payload["config"][0]["parsed"]
    blocks = parsed[0].get("block") if len(parsed) == 1 else None
    if not blocks or len(blocks) != 1 or blocks[0].get("directive") != "server":
        raise ValidationError(
            "Line 1: the braces and semicolons do not form statements "
            "(a '{' needs a directive name before it)."
        )
    return blocks[0].get("block", [])


def contained_statements(text: str) -> list[dict]:
    """The statements, if ``render_directives`` can write them back with the same structure
    (names and arguments are plain tokens): what rendering needs, whatever the allow-list
    says. Raw text stored around the services (a test, a bulk update) still cannot leave the
    site's server block; nginx judges the rest."""
    statements = parse_directives(text)
    errors: list[str] = []

    def walk(items: list[dict], depth: int) -> None:
        for stmt in items:
            problem = "" if NAME.fullmatch(stmt["directive"]) else "not a directive name"
            problem = problem or next(filter(None, map(_token_problem, stmt["args"])), "")
            if problem:
                errors.append(f"Line {stmt['line']}: {stmt['directive']!r}: {problem}.")
            elif "block" in stmt and depth >= MAX_DEPTH:
                errors.append(f"Line {stmt['line']}: blocks nest at most {MAX_DEPTH} deep.")
            elif "block" in stmt:
                walk(stmt["block"], depth + 1)

    walk(statements, 0)
    if errors:
        raise ValidationError(errors)
    return statements


def check_directives(text: str, site: SiteContext | None) -> list[dict]:
    """Parse and check; the statements, or a ValidationError naming each refused line.
    ``site`` None checks what can be checked without the site (the model field's validator)."""
    statements = parse_directives(text)
    check_statements(statements, site)
    return statements


def check_statements(statements: list[dict], site: SiteContext | None) -> None:
    """The allow-list and argument checks of parsed statements (lines as in their text)."""
    errors: list[str] = []
    count = _walk(statements, SERVER_LEVEL, site, errors, depth=0)
    if count > MAX_STATEMENTS:
        errors.append(f"At most {MAX_STATEMENTS} statements.")
    if errors:
        raise ValidationError(errors)


def _walk(statements, loc: Location | None, site, errors: list[str], depth: int) -> int:
    seen: dict[str, int] = {}
    locations: set[tuple[str, str]] = set()
    count = 0
    for stmt in statements:
        count += 1
        name, line, args = stmt["directive"], stmt["line"], stmt["args"]

        def refuse(why: str, name=name, line=line) -> None:
            errors.append(f"Line {line}: {name}: {why}.")

        if not NAME.fullmatch(name):
            errors.append(f"Line {line}: {name!r} is not a directive name.")
            continue
        why = refusal(name)
        if why:
            refuse(f"not allowed: {why}")
            continue
        problem = next(filter(None, map(_token_problem, args)), "")
        if problem:
            refuse(problem)
            continue
        if loc is SERVER_LEVEL and name != "location":
            refuse(
                "at the top level only location blocks are allowed (a directive there would "
                "also apply to the panel's probe); put it inside a location"
            )
            continue
        if ("block" in stmt) != (name == "location"):
            refuse("location takes a block; other directives end with ';'")
            continue
        problem = ALLOWED[name](args, loc, site)
        if problem:
            refuse(problem)
            continue
        group = "pass" if name in PASSES else name
        seen[group] = seen.get(group, 0) + 1
        if seen[group] == 2 and name not in REPEATABLE:
            refuse("given twice in one block" if group != "pass" else "a second upstream")
        if name in ("root", "alias") and seen.get("root", 0) and seen.get("alias", 0):
            refuse("root and alias cannot both be in one location")
        if name == "location":
            new = location_of(args)
            problem = _location_problem(new, loc, site, locations, depth)
            if problem:
                refuse(problem)
            else:
                locations.add(location_key(new))
            if depth < MAX_DEPTH:  # what is inside is reported too
                count += _walk(stmt["block"], new, site, errors, depth + 1)
    return count


def _location_problem(new: Location, parent, site, siblings, depth: int) -> str:
    if depth >= MAX_DEPTH:
        return f"locations nest at most {MAX_DEPTH} deep"
    if location_key(new) in siblings:
        return f"location {new.uri} is given twice"
    if not new.regex and new.uri.startswith(PANEL_PREFIX):
        return f"{PANEL_PREFIX}/ belongs to the panel (its probe)"
    if parent is SERVER_LEVEL:
        if site is not None and location_key(new) in site.taken_locations:
            return f"location {new.uri} is already rendered by the site's template or options"
        return ""
    if parent.kind in ("=", "@"):
        return "a location cannot be inside an exact-match or named location"
    if new.kind == "@":
        return "named locations are allowed at the top level only"
    if not new.regex and not new.uri.startswith(parent.uri):
        return f"location {new.uri} is outside the location {parent.uri} it is in"
    return ""


# -- rendering --------------------------------------------------------------------------------


def render_directives(statements: list[dict], depth: int = 1) -> str:
    """The statements as nginx text, one directive per line, indented for a server block."""
    out = []
    pad = "    " * depth
    for stmt in statements:
        head = " ".join([stmt["directive"], *map(quote, stmt["args"])])
        if "block" in stmt:
            inner = render_directives(stmt["block"], depth + 1)
            out.append(f"{pad}{head} {{\n{inner}{pad}}}\n")
        else:
            out.append(f"{pad}{head};\n")
    return "".join(out)
