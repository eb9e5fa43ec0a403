"""Moving the old free-text ``custom_directives`` to typed options (migration 0002).

The old field held nginx text a customer typed, checked by a blocklist. Each site's text is
read by the parser; statements with an exact typed equivalent become options
(``client_max_body_size``, ``gzip on``, ``add_header``, ``error_page``); what remains is kept
as administrators' raw directives if it passes the new checks, and otherwise retired: the
whole original text is kept in ``retired_directives`` (never rendered) and the site's status
message says what happened and why. Nothing typed is lost; nothing unchecked is rendered.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from websites.directives import (
    SiteContext,
    check_statements,
    parse_directives,
    render_directives,
)
from websites.options import ERROR_CODES, MAX_BODY_MB, parse_options
from websites.vhost import rendered_locations

SIZE_MB = {"": 1 / (1024 * 1024), "k": 1 / 1024, "m": 1, "g": 1024}


@dataclass
class Conversion:
    options: dict = field(default_factory=dict)
    raw: str = ""
    retired: str = ""
    notes: list[str] = field(default_factory=list)


def _translate(stmt: dict, options: dict) -> bool:
    """Add ``stmt``'s typed equivalent to ``options``; False when it has none."""
    name, args = stmt["directive"], stmt["args"]
    if "block" in stmt:
        return False
    if name == "client_max_body_size" and len(args) == 1:
        m = re.fullmatch(r"([0-9]{1,9})([kKmMgG]?)", args[0])
        if not m or m.group(1) == "0":
            return False
        mb = math.ceil(int(m.group(1)) * SIZE_MB[m.group(2).lower()])
        if not 1 <= mb <= MAX_BODY_MB or "max_body_mb" in options:
            return False
        options["max_body_mb"] = mb
        return True
    if name == "gzip" and args in (["on"], ["off"]) and "gzip" not in options:
        options["gzip"] = args == ["on"]
        return True
    if name == "add_header" and len(args) in (2, 3) and args[2:] in ([], ["always"]):
        options.setdefault("headers", []).append({"name": args[0], "value": args[1]})
        return True
    if name == "error_page" and len(args) >= 2:
        *codes, path = args
        if not all(c.isdigit() and int(c) in ERROR_CODES for c in codes):
            return False
        pages = options.setdefault("error_pages", [])
        pages.extend({"code": int(c), "path": path} for c in codes)
        return True
    return False


def convert(text: str, *, domain: str, names: tuple[str, ...], base: SiteContext) -> Conversion:
    """What becomes of one site's old text. ``base`` describes the site (its directory, log
    directory, server address); its ``taken_locations`` are filled in here."""
    out = Conversion()
    if not text.strip():
        return out
    try:
        statements = parse_directives(text.replace("\r\n", "\n"))
    except ValidationError as exc:
        out.retired = text
        out.notes.append("retired (not rendered): " + " ".join(exc.messages))
        return out
    options: dict = {}
    rest = [s for s in statements if not _translate(s, options)]
    try:
        parsed = parse_options(options, names=names, own_addresses=base.own_addresses)
    except ValidationError:
        parsed, rest = parse_options({}), statements  # no partial translation
    out.options = parsed.to_json()
    if out.options:
        out.notes.append("moved into options: " + ", ".join(sorted(out.options)))
    if not rest:
        return out
    context = SiteContext(
        domain=domain,
        site_dir=base.site_dir,
        log_dir=base.log_dir,
        hostname_upstreams=False,
        own_addresses=base.own_addresses,
        taken_locations=rendered_locations(parsed),
    )
    try:
        check_statements(rest, context)
    except ValidationError as exc:
        out.retired = text
        out.notes.append("retired (not rendered): " + " ".join(exc.messages))
        return out
    out.raw = render_directives(rest, depth=0)
    out.notes.append("kept as raw directives (administrators only from now on)")
    return out
