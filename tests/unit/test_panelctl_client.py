"""panelctl's own checks, against a stand-in panel on loopback that speaks the API's HTTP
(a few canned answers) and records every request: what may go into a URL path, which
``next`` links are followed with the token, http:// logins, one JSON document per run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from panelctl import cli

OP = "0b0c3f9e-5b7e-4a53-9d6e-2f4c1a2b3c4d"


class StandIn:
    def __init__(self):
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body):
                data = json.dumps(body).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                auth = self.headers.get("Authorization", "")
                stand_in.requests.append((self.command, self.path, auth))

            def do_GET(self):  # noqa: N802 (http.server's name)
                self._record()
                port = stand_in.server.server_address[1]
                if self.path.startswith("/api/v1/zones/"):
                    # A next page on another origin (here: the same server by another name).
                    nxt = f"http://localhost:{port}/api/v1/zones/?page=2"
                    self._answer({"results": [{"uuid": OP}], "next": nxt})
                elif self.path.startswith(f"/api/v1/operations/{OP}/log/"):
                    self._answer([])
                elif self.path.startswith(f"/api/v1/operations/{OP}/"):
                    self._answer(operation("succeeded"))
                else:
                    self._answer(None)

            def do_POST(self):  # noqa: N802
                self._record()
                self._answer(operation("queued"))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def operation(state: str) -> dict:
    return {"uuid": OP, "kind": "vps.create", "state": state, "progress": 100, "message": "ok"}


@pytest.fixture(scope="module")
def stand_in():
    s = StandIn()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def panelctl(stand_in, tmp_path, monkeypatch):
    cfg = tmp_path / "config.ini"
    cfg.write_text(f"[default]\nurl = {stand_in.url}\ntoken = uhp_secret\n")
    cfg.chmod(0o600)
    monkeypatch.setenv("PANELCTL_CONFIG", str(cfg))
    monkeypatch.delenv("PANELCTL_TOKEN", raising=False)
    stand_in.requests.clear()

    def run(*args: str):
        return CliRunner().invoke(cli.main, list(args))

    return run


@pytest.mark.parametrize(
    "args",
    [
        ["servers", "show", "../tokens/x"],
        ["servers", "delete", "--yes", "../../me"],
        ["operations", "cancel", "x/../../tokens"],
        ["servers", "action", OP, "../../tokens/x"],
        ["servers", "action", OP, "apply?x=1"],
        ["servers", "update", "../x", "--set", "name=y"],
    ],
)
def test_path_segments_are_checked_before_any_request(args, panelctl, stand_in):
    result = panelctl(*args)
    assert result.exit_code == 2, result.output
    assert stand_in.requests == []


def test_an_action_name_and_uuid_that_fit_are_sent(panelctl, stand_in):
    result = panelctl("--json", "servers", "action", OP.upper(), "test-connection")
    assert result.exit_code == 0, result.output
    assert stand_in.requests[0][:2] == ("POST", f"/api/v1/servers/{OP}/test-connection/")


def test_a_next_page_elsewhere_is_not_followed_with_the_token(panelctl, stand_in):
    result = panelctl("zones", "list")
    assert result.exit_code == 3 and "refusing to follow" in result.output
    assert len(stand_in.requests) == 1  # the first page only


def test_login_refuses_http_except_on_loopback(panelctl, stand_in, monkeypatch):
    monkeypatch.setenv("PANELCTL_TOKEN", "uhp_secret")
    result = panelctl("login", "--url", "http://panel.example.com")
    assert result.exit_code == 2 and "https://" in result.output
    assert panelctl("login", "--url", "ftp://127.0.0.1/").exit_code == 2
    assert stand_in.requests == []
    # Loopback over http:// is allowed (the stand-in has no me/ so the API refuses: 2, but
    # only after the request went out).
    panelctl("login", "--url", stand_in.url)
    assert stand_in.requests and stand_in.requests[0][1] == "/api/v1/me/"


def test_create_with_json_prints_one_document(panelctl, stand_in):
    result = panelctl("--json", "vps", "create", "--set", "hostname=a", "--interval", "0")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)  # one document: the operation at its end
    assert body["state"] == "succeeded"
