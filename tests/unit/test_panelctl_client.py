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
EVIL = "5d1b7a3c-0e2f-4b6a-8c9d-1e2f3a4b5c6d"  # an operation whose texts carry terminal escapes
ESCAPES = "\x1b]0;owned\x07\x1b[2K\rsucceeded: all fine\u202e"
HTML = b"<html><body>Sign in to the Wi-Fi</body></html>"


class StandIn:
    def __init__(self):
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _raw(self, data: bytes, content_type: str = "text/html"):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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
                elif self.path == "/api/v1/me/":
                    self._answer({"email": "ci@example.com"})
                elif self.path.startswith("/api/v1/servers/"):
                    self._raw(HTML)  # a proxy's page where the API's JSON should be
                elif self.path.startswith("/api/v1/mailboxes/?page=2"):
                    self._raw(HTML)
                elif self.path.startswith("/api/v1/mailboxes/"):
                    nxt = f"{stand_in.url}/api/v1/mailboxes/?page=2"
                    self._answer({"results": [{"uuid": OP}], "next": nxt})
                elif self.path.startswith(f"/api/v1/operations/{EVIL}/log/"):
                    self._answer([{"id": 1, "level": "info", "message": ESCAPES}])
                elif self.path.startswith(f"/api/v1/operations/{EVIL}/"):
                    self._answer({**operation("failed"), "uuid": EVIL, "error": ESCAPES})
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


@pytest.mark.parametrize("where", ["environment", "profile"])
def test_a_plain_http_url_is_refused_before_any_request(where, panelctl, stand_in, monkeypatch):
    """0.0.0.0 reaches the stand-in on loopback yet is no loopback address: without the
    check in ``config.load`` the token would go out."""
    port = stand_in.server.server_address[1]
    url = f"http://0.0.0.0:{port}"
    if where == "environment":
        monkeypatch.setenv("PANELCTL_URL", url)
    else:
        cfg = cli.config.path()
        cfg.write_text(f"[default]\nurl = {url}\ntoken = uhp_secret\n")
    result = panelctl("zones", "list")
    assert result.exit_code == 3 and "https://" in result.output, result.output
    assert stand_in.requests == []


def test_the_profile_file_is_replaced_whole_never_truncated(panelctl, monkeypatch):
    """A write that fails half-way (a full disk) leaves the old file and its profiles."""
    from panelctl import config

    cfg = config.path()
    before = cfg.read_text()
    inode = cfg.stat().st_ino

    def half_written(parser, out, *args, **kwargs):
        out.write("[default]\nurl = ")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config.configparser.ConfigParser, "write", half_written)
    with pytest.raises(OSError):
        config.save(config.Profile("other", "https://panel.example.com", "uhp_other"))
    assert cfg.read_text() == before
    assert [p.name for p in cfg.parent.iterdir()] == [cfg.name]  # no temporary file left
    monkeypatch.undo()
    monkeypatch.setenv("PANELCTL_CONFIG", str(cfg))
    config.save(config.Profile("other", "https://panel.example.com", "uhp_other"))
    assert cfg.stat().st_ino != inode and oct(cfg.stat().st_mode & 0o777) == "0o600"
    assert config.load("other").token == "uhp_other" and config.load("default")


def test_login_reads_the_token_from_stdin(panelctl, stand_in):
    from panelctl import config

    result = CliRunner().invoke(
        cli.main,
        ["--profile", "piped", "login", "--url", stand_in.url, "--token-stdin"],
        input="uhp_from_pipe\n",
    )
    assert result.exit_code == 0, result.output
    assert stand_in.requests == [("GET", "/api/v1/me/", "Bearer uhp_from_pipe")]
    assert config.load("piped").token == "uhp_from_pipe"
    assert "uhp_from_pipe" not in result.output and "warning" not in result.output


def test_a_token_on_the_command_line_is_warned_about(panelctl, stand_in):
    result = panelctl("login", "--url", stand_in.url, "--token", "uhp_visible")
    assert result.exit_code == 0, result.output
    assert "visible in the process list" in result.stderr


def test_server_text_cannot_drive_the_terminal(panelctl, stand_in):
    """Operation log lines and errors come from the panel (and from what customers named
    things): escape sequences are shown escaped, never sent to the terminal."""
    result = panelctl("operations", "follow", EVIL, "--interval", "0")
    assert result.exit_code == 1
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream and "\r" not in stream and "\u202e" not in stream
    assert "\\x1b]0;owned\\x07" in result.stderr  # the log line, visibly escaped
    assert result.stdout.startswith("failed: \\x1b]0;owned")
    assert "\nsucceeded" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", ["servers", "mailboxes"])
def test_a_reply_that_is_not_json_is_a_clear_error(command, panelctl):
    """The first page, or a later one, is an HTML page (a proxy, a captive portal)."""
    result = panelctl(command, "list")
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert "other than JSON (text/html)" in result.stderr


@pytest.mark.parametrize(
    "following",
    [
        "https://panel.example.evil/api/v1/zones/?page=2",  # a prefix of another host
        "https://panel.example.evil.com/api/v1/zones/?page=2",
        "https://panel.example@evil.com/api/v1/zones/?page=2",  # userinfo, then the host
        "https://panel.example:8443/api/v1/zones/?page=2",  # another port
        "http://panel.example/api/v1/zones/?page=2",  # no TLS
        "https://panel.example/admin/",  # the panel, but not its API
        "https://panel.example:bad/api/v1/",
        "//panel.example/api/v1/zones/",
    ],
)
def test_a_next_link_off_the_panel_is_refused(following):
    from panelctl.client import ApiError, Client
    from panelctl.config import Profile

    client = Client(Profile(name="t", url="https://panel.example", token="uhp_secret"))
    sent = []

    class Answer:
        status_code = 200

        def json(self):
            return {"results": [{"n": 1}], "next": following}

    client.get = lambda path, **params: Answer().json()
    client.session.get = lambda url, **kw: sent.append(url) or Answer()
    with pytest.raises(ApiError, match="refusing to follow"):
        client.pages("zones/", {}, None)
    assert sent == []  # the token never left for it


def test_a_next_link_on_the_panel_is_followed():
    from panelctl.client import Client, on_panel
    from panelctl.config import Profile

    base = "https://panel.example/api/v1/"
    assert on_panel("https://PANEL.example:443/api/v1/zones/?offset=200", base)
    assert on_panel("https://panel.example/api/v1/zones/?offset=200", base)
    client = Client(Profile(name="t", url="https://panel.example", token="uhp_secret"))
    pages = iter([{"results": [2], "next": None}])

    class Answer:
        status_code = 200

        def json(self):
            return next(pages)

    # The same origin written another way (as a proxy may rewrite it) is still the panel.
    following = "https://Panel.Example:443/api/v1/zones/?offset=1"
    client.get = lambda path, **params: {"results": [1], "next": following}
    client.session.get = lambda url, **kw: Answer()
    assert client.pages("zones/", {}, None) == [1, 2]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost.example.com", False),  # a name that merely starts like it
        ("localhost.", False),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("panel.example", False),  # never resolved, whatever it points at
    ],
)
def test_loopback_is_decided_from_the_name_alone(host, loopback):
    from panelctl.config import is_loopback

    assert is_loopback(host) is loopback
