"""The REST API over HTTP: one session with the token, one error type."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from panelctl.config import Profile

TIMEOUT = 30
DEFAULT_PORTS = {"http": 80, "https": 443}


class ApiError(Exception):
    """The API refused (``status``, its JSON ``body``) or could not be reached (status 0)."""

    def __init__(self, message: str, *, status: int = 0, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class Client:
    def __init__(self, profile: Profile) -> None:
        self.base = profile.url.rstrip("/") + "/api/v1/"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {profile.token}"
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "panelctl"

    def request(self, method: str, path: str, *, params=None, json=None) -> Any:
        url = self.base + path.lstrip("/")
        try:
            resp = self.session.request(
                method, url, params=params, json=json, timeout=TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise ApiError(f"cannot reach {self.base}: {exc.__class__.__name__}") from None
        if resp.status_code == 204:
            return None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            raise ApiError(_describe(resp.status_code, body), status=resp.status_code, body=body)
        if body is None and resp.content:
            raise _not_json(resp, self.base)
        return body

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, data: dict | None = None) -> Any:
        return self.request("POST", path, json=data or {})

    def patch(self, path: str, data: dict) -> Any:
        return self.request("PATCH", path, json=data)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def pages(self, path: str, params: dict, limit: int | None) -> list[dict]:
        """Every row of a list (following ``next``), or the first ``limit`` rows."""
        rows: list[dict] = []
        body = self.get(path, **params, limit=min(limit or 200, 200))
        while True:
            if isinstance(body, list):  # an unpaginated list
                return body[:limit] if limit else body
            results, following = _page(body, self.base)
            rows += results
            if not following or (limit and len(rows) >= limit):
                return rows[:limit] if limit else rows
            if not on_panel(following, self.base):
                # The token goes with every request: only to the panel it was given for.
                raise ApiError(f"refusing to follow a next page outside {self.base}")
            try:
                resp = self.session.get(following, timeout=TIMEOUT, allow_redirects=False)
            except requests.RequestException as exc:
                raise ApiError(f"cannot reach {self.base}: {exc.__class__.__name__}") from None
            try:
                body = resp.json()
            except ValueError:
                body = None
            if resp.status_code >= 400:
                raise ApiError(_describe(resp.status_code, body), status=resp.status_code)
            if not isinstance(body, dict):
                raise _not_json(resp, self.base)


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` is on the panel ``base`` names: the same scheme, host and port, compared
    as parsed parts. A prefix test would let ``https://panel.example.evil/`` (or
    ``https://panel.example@evil/``) pass for ``https://panel.example`` and carry the token
    there. The path is not compared: the API's own links stay under it anyway."""
    origin = _origin(url)
    return origin is not None and origin == _origin(base)


def on_panel(url: str, base: str) -> bool:
    """``url`` is under ``base``: its origin (``same_origin``) and, below it, its path."""
    return same_origin(url, base) and urlsplit(url).path.startswith(urlsplit(base).path)


def _not_json(resp: requests.Response, base: str) -> ApiError:
    """A 2xx answer that is not the API's JSON (a proxy's or captive portal's page, a
    misconfigured URL): said plainly, as "could not be reached" (exit 3), not a traceback."""
    kind = resp.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
    return ApiError(f"{base} answered {resp.status_code} with something other than JSON ({kind})")


def _page(body: Any, base: str) -> tuple[list, str | None]:
    """A list page's rows and its ``next`` link, or an ApiError when it is not one."""
    results = body.get("results", []) if isinstance(body, dict) else None
    following = body.get("next") if isinstance(body, dict) else None
    if not isinstance(results, list) or not (following is None or isinstance(following, str)):
        raise ApiError(f"{base} answered with something other than a list page")
    return results, following


def _describe(status: int, body: Any) -> str:
    if isinstance(body, dict):
        if "detail" in body and len(body) == 1:
            return f"{status}: {body['detail']}"
        parts = []
        for field, errors in body.items():
            text = "; ".join(map(str, errors)) if isinstance(errors, list) else str(errors)
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        return f"{status}: " + " | ".join(parts)
    return f"the API answered {status}"
