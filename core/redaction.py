"""What of a receiver's URL others may read: integrators' webhooks (hooks/) and monitoring's
webhook channels keep their URLs whole for their owner and for sending, and show everyone
else, and the append-only audit chain, only this redacted form."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` with nothing that may be a credential: only the scheme, host, port and first
    path segment stay, followed by ``/***`` when the path goes on (Slack's
    ``/services/T…/B…/<secret>`` and Discord's ``/api/webhooks/<id>/<token>`` carry their
    secret in the path). A user and password become ``***@``, each query item keeps its
    name and loses its value (``?token=***``) and a bare item (``?SECRETTOKEN``), which may be
    the token itself, becomes ``***``; a fragment becomes ``***``. What the audit chain keeps
    and what anyone but the URL's owner is shown."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED  # not a URL one can take apart: show none of it
    if not parts.scheme or not host:
        return REDACTED if url else ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if "@" in parts.netloc:
        netloc = f"{REDACTED}@{netloc}"
    segments = parts.path.split("/")  # "/a/b" -> ["", "a", "b"]
    path = "/".join(segments[:2])
    if len(segments) > 2 and any(segments[2:]):
        path += f"/{REDACTED}"
    elif len(segments) > 2:
        path += "/"  # a trailing slash only: nothing hidden
    query = "&".join(  # the names stay as written (percent-encoded); no value does
        f"{pair.partition('=')[0]}={REDACTED}" if "=" in pair else REDACTED
        for pair in parts.query.split("&")
        if pair
    )
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))
