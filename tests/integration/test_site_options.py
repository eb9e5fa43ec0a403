"""Typed site options and administrators' raw directives against a real nginx.

Property tests: whatever the checks accept renders a vhost that ``nginx -t`` accepts and whose
parse holds exactly the site's server blocks, names and statements (nothing accepted adds a
block, a line or an argument); a sample is loaded into a live nginx, where each of the site's
names answers the site's probe and another customer's name still reaches its own site.
"""

from __future__ import annotations

import http.client
import ipaddress
import shutil
import subprocess
import tempfile
from pathlib import Path

import crossplane
import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import start_nginx, stop_pidfile, world_readable_tmp
from websites.directives import SiteContext, check_directives, parse_directives
from websites.models import Website
from websites.nginx import PROBE_PATH, RELOAD_SCRIPT, REVISION_HEADER
from websites.options import ERROR_CODES, parse_options
from websites.vhost import STATIC_FILES, SiteEnv, render_vhost, rendered_locations

pytestmark = [pytest.mark.integration]
props = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
OTHER = "other-customer.example"
SERVER_ADDRESS = "198.51.100.7"
BCRYPT = "$2b$08$" + "a" * 53  # the form crypt(3) reads; what it hashes does not matter here


class NginxUnderTest:
    """A private nginx: ``check`` runs ``nginx -t`` on one vhost (nothing loaded), ``load``
    serves it beside another customer's site."""

    def __init__(self, prefix: Path) -> None:
        self.daemon = start_nginx(prefix)
        self.prefix = prefix
        self.listen = f"127.0.0.1:{self.daemon.port}"
        (prefix / "cand").mkdir()
        (prefix / "conf" / "test.conf").write_text(
            self.daemon.conf.read_text()
            .replace(f"include {prefix}/panel.d/*.conf;", f"include {prefix}/cand/*.conf;")
            .replace(f"pid {prefix}/nginx.pid;", f"pid {prefix}/test.pid;")
        )
        (prefix / "panel.d" / "other.conf").write_text(
            f"server {{ listen {self.listen}; server_name {OTHER}; return 200 other; }}\n"
        )
        self.reload()

    def check(self, text: str) -> subprocess.CompletedProcess:
        (self.prefix / "cand" / "site.conf").write_text(text)
        return subprocess.run(
            ["nginx", "-t", "-q", "-p", f"{self.prefix}/", "-c", f"{self.prefix}/conf/test.conf"],
            capture_output=True,
            text=True,
        )

    def reload(self) -> None:
        """The engine's own reload: returns once only the new workers take connections."""
        pid, log = self.prefix / "nginx.pid", self.prefix / "logs" / "error.log"
        argv = ["sh", "-c", RELOAD_SCRIPT, "nginx-reload", str(pid), str(log), "20"]
        result = subprocess.run(argv, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr

    def load(self, text: str) -> None:
        (self.prefix / "panel.d" / "site.conf").write_text(text)
        self.reload()

    def request(self, host: str, path: str = "/") -> tuple[int, dict, bytes]:
        return http_get(self.daemon.port, host, path)

    def render(self, site: Website) -> tuple[str, str]:
        """The site's vhost for this nginx, its server at SERVER_ADDRESS."""
        www = str(self.prefix / "www")
        env = SiteEnv(root=f"{www}/{site.domain}/public", auth_dir=f"{www}/auth")
        return render_vhost(site, self.listen, www, frozenset({SERVER_ADDRESS}), env)


def http_get(port: int, host: str, path: str = "/") -> tuple[int, dict, bytes]:
    """One request, redirects not followed: (status, lowercase headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, "Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def nginx_ut():
    if not shutil.which("nginx"):
        from tests.conftest import require_real

        require_real("nginx is not installed")
    prefix = world_readable_tmp("uhp-options-")
    daemon = NginxUnderTest(prefix)
    yield daemon
    stop_pidfile(prefix / "nginx.pid")
    shutil.rmtree(prefix, ignore_errors=True)


def site(domain: str, aliases: tuple[str, ...], options=None, raw: str = "") -> Website:
    return Website(
        domain=domain, aliases=" ".join(aliases), options=options or {}, custom_directives=raw
    )


def parsed(text: str) -> list[dict]:
    """The rendered vhost as crossplane reads it: the list of its server blocks."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write("http {\n" + text + "}\n")
        f.flush()
        payload = crossplane.parse(f.name, single=True, check_ctx=False, check_args=False)
    assert payload["errors"] == [], payload["errors"]
    (http,) = payload["config"][0]["parsed"]
    return http["block"]


def strip_lines(statements: list[dict]) -> list[dict]:
    return [
        {
            "directive": s["directive"],
            "args": s["args"],
            **({"block": strip_lines(s["block"])} if "block" in s else {}),
        }
        for s in statements
    ]


def assert_only_the_sites_names(text: str, names: list[str], listen: str) -> list[dict]:
    """Every server block of the vhost listens where the panel says, serves only names of
    the site and ends with the probe; together they serve each name exactly once."""
    blocks = parsed(text)
    assert blocks and all(b["directive"] == "server" for b in blocks)
    served = []
    for block in blocks:
        by_name = {}
        for stmt in block["block"]:
            by_name.setdefault(stmt["directive"], []).append(stmt)
        assert [s["args"] for s in by_name["listen"]] == [[listen]]
        (server_name,) = by_name["server_name"]
        served += server_name["args"]
        probe = block["block"][-1]
        assert probe["directive"] == "location" and probe["args"] == ["=", PROBE_PATH]
    assert sorted(served) == sorted(names)
    return blocks


# -- strategies --------------------------------------------------------------------------------

LABEL = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
NASTY = st.sampled_from(['"', "'", ";", "{", "}", "\n", "\r", "\\", "$", "#", " ", "\x00"])
NASTY_TEXT = st.lists(st.one_of(NASTY, st.text(max_size=4)), max_size=6).map("".join)
PUBLIC_IPS = st.sampled_from(["8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860:4860::8888"])
PRIVATE_IPS = st.sampled_from(["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1", "0.0.0.0"])
PATHS = st.from_regex(r"/([a-z0-9]{1,6}/){0,2}", fullmatch=True)


@st.composite
def names(draw):
    domain = f"{draw(LABEL)}.example.com"
    extra = draw(
        st.lists(
            st.sampled_from([f"www.{domain}", f"shop.{domain}", "alias.example.net"]),
            unique=True,
        )
    )
    return domain, tuple(extra)


@st.composite
def upstreams(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(NASTY_TEXT)
    ip = ipaddress.ip_address(draw(st.one_of(PUBLIC_IPS, PRIVATE_IPS)))
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    scheme = draw(st.sampled_from(["http", "https", "ftp"]))
    return f"{scheme}://{host}{port}{draw(st.one_of(st.just(''), PATHS))}"


def maybe_nasty(valid, weight: int = 3):
    """Mostly ``valid``, else syntax that must never get through."""
    return st.one_of(*[valid] * weight, NASTY_TEXT, st.tuples(valid, NASTY).map("".join))


OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "www_redirect": st.sampled_from(["", "to_apex", "to_www", "sideways"]),
        "https_redirect": st.booleans(),
        "headers": st.lists(
            st.fixed_dictionaries(
                {
                    "name": maybe_nasty(st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True)),
                    "value": maybe_nasty(st.from_regex(r"[ -~]{1,40}", fullmatch=True)),
                }
            ),
            max_size=4,
        ),
        "gzip": st.one_of(st.booleans(), st.just("yes")),
        "static_cache_days": st.integers(-1, 400),
        "max_body_mb": st.one_of(st.integers(-1, 3000), st.just(True)),
        "error_pages": st.lists(
            st.fixed_dictionaries(
                {
                    "code": st.sampled_from([*ERROR_CODES, 200, 499]),
                    "path": maybe_nasty(PATHS.map(lambda p: p + "error.html")),
                }
            ),
            max_size=3,
        ),
        "proxies": st.lists(
            st.fixed_dictionaries({"path": maybe_nasty(PATHS), "upstream": upstreams()}),
            max_size=3,
        ),
        "auth_paths": st.lists(
            st.fixed_dictionaries(
                {
                    "path": maybe_nasty(PATHS),
                    "users": st.lists(
                        st.fixed_dictionaries(
                            {
                                "name": maybe_nasty(
                                    st.from_regex(r"[a-z][a-z0-9._-]{0,8}", fullmatch=True)
                                ),
                                "hash": maybe_nasty(st.just(BCRYPT), weight=6),
                            }
                        ),
                        max_size=3,
                    ),
                }
            ),
            max_size=3,
        ),
    },
)


def accepted_options(data, domain, aliases):
    try:
        return parse_options(
            data, names=(domain, *aliases), own_addresses=frozenset({SERVER_ADDRESS})
        )
    except ValidationError:
        return None


# -- typed options -----------------------------------------------------------------------------


class TestOptionsRender:
    @props
    @given(site_names=names(), data=OPTIONS)
    def test_accepted_options_render_what_nginx_accepts_and_nothing_more(
        self, nginx_ut, site_names, data
    ):
        domain, aliases = site_names
        options = accepted_options(data, domain, aliases)
        if options is None:
            return
        text, _revision = nginx_ut.render(site(domain, aliases, data))
        result = nginx_ut.check(text)
        assert result.returncode == 0, (result.stderr, text)
        blocks = assert_only_the_sites_names(text, [domain, *aliases], nginx_ut.listen)
        main = blocks[0]["block"]
        # Every typed value is exactly the arguments it was meant to be.
        headers = [s["args"] for s in main if s["directive"] == "add_header"]
        assert headers == [[h.name, h.value, "always"] for h in options.headers]
        pages = [s["args"] for s in main if s["directive"] == "error_page"]
        assert pages == [[str(p.code), p.path] for p in options.error_pages]
        locations = {tuple(s["args"]): s["block"] for s in main if s["directive"] == "location"}
        for proxy in options.proxies:
            args = ("/",) if proxy.path == "/" else ("^~", proxy.path)
            assert locations[args][0]["args"] == [proxy.upstream]
        # Every location at or below a protected path asks for its password file.
        guarded = {a.path for a in options.auth_paths}
        for args, block in locations.items():
            if args[0] == "^~" and any(args[1].startswith(g) for g in guarded):
                files = [s["args"] for s in block if s["directive"] == "auth_basic_user_file"]
                assert len(files) == 1 and files[0][0].endswith(".htpasswd"), (args, text)
        # "/", the probe and the ACME challenge (websites/tls.py), the proxies, and the
        # protected paths that are not a proxy's.
        proxied = {p.path for p in options.proxies if p.path != "/"}
        expected = 3 + len(proxied) + len(guarded - proxied)
        assert len(locations) == expected + bool(options.static_cache_days)

    @settings(max_examples=12, deadline=None)
    @given(site_names=names(), data=OPTIONS)
    def test_a_live_nginx_serves_the_sites_names_and_no_one_elses(self, nginx_ut, site_names, data):
        domain, aliases = site_names
        if accepted_options(data, domain, aliases) is None:
            return
        text, revision = nginx_ut.render(site(domain, aliases, data))
        nginx_ut.load(text)
        for name in (domain, *aliases):
            status, headers, _ = nginx_ut.request(name, PROBE_PATH)
            assert (status, headers.get(REVISION_HEADER.lower())) == (204, revision), name
        assert nginx_ut.request(OTHER)[::2] == (200, b"other")


def test_options_served_live(nginx_ut):
    """Redirects, headers, gzip, caching, body size and error pages as a browser sees them."""
    domain = "shop.example.com"
    www = nginx_ut.prefix / "www" / domain / "public"
    (www / "assets").mkdir(parents=True)
    (www / "index.html").write_text("home " * 400)
    (www / "assets" / "app.css").write_text("body{}")
    (www / "missing.html").write_text("custom not found")
    for p in [www.parent, www, www / "assets"]:
        p.chmod(0o755)
    data = {
        "www_redirect": "to_apex",
        "headers": [{"name": "X-Frame-Options", "value": "DENY"}],
        "gzip": True,
        "static_cache_days": 7,
        "max_body_mb": 5,
        "error_pages": [{"code": 404, "path": "/missing.html"}],
    }
    s = site(domain, (f"www.{domain}",), data)
    parse_options(data, names=tuple(s.names))
    text, revision = nginx_ut.render(s)
    nginx_ut.load(text)

    status, headers, _ = nginx_ut.request(f"www.{domain}", "/a/b?c=1")
    assert status == 301 and headers["location"] == f"http://{domain}/a/b?c=1"
    status, headers, body = nginx_ut.request(domain, "/")
    assert status == 200 and headers["x-frame-options"] == "DENY"
    assert headers.get("content-encoding") == "gzip"
    status, headers, _ = nginx_ut.request(domain, "/assets/app.css")
    assert status == 200 and headers["cache-control"] == "max-age=604800"
    assert nginx_ut.request(domain, "/nope")[::2] == (404, b"custom not found")
    # the probe answers on the redirecting name too (tested for every name above)
    assert nginx_ut.request(f"www.{domain}", PROBE_PATH)[1][REVISION_HEADER.lower()] == revision


# -- raw directives ----------------------------------------------------------------------------


def site_context(nginx_ut, domain: str, data=None) -> SiteContext:
    options = parse_options(data or {})
    return SiteContext(
        domain=domain,
        site_dir=f"{nginx_ut.prefix}/www/{domain}",
        log_dir=f"{nginx_ut.prefix}/logs",
        own_addresses=frozenset({SERVER_ADDRESS}),
        taken_locations=rendered_locations(options),
    )


def arg_text(draw, value: str) -> str:
    """One argument as an administrator might type it: bare, or in either kind of quotes
    (mostly the kind that holds it, sometimes not)."""
    if draw(st.integers(0, 9)) == 0:
        style = draw(st.sampled_from(["bare", "double", "single"]))
    elif value and not any(c in value for c in " \t\n{};'\"#"):
        style = "bare"
    else:
        style = "double" if '"' not in value else "single"
    if style == "double":
        return f'"{value}"'
    if style == "single":
        return f"'{value}'"
    return value


@st.composite
def statement(draw, prefix: str, depth: int, site_dir: str, log_dir: str) -> str:
    values = maybe_nasty(
        st.one_of(st.from_regex(r"[A-Za-z0-9 ,.:/='{}()-]{1,20}", fullmatch=True), st.just("$uri")),
        weight=10,
    )
    choices = {
        "add_header": lambda: [
            draw(st.from_regex(r"X-[A-Za-z]{1,8}", fullmatch=True)),
            draw(values),
            *draw(st.sampled_from([[], ["always"]])),
        ],
        "return": lambda: [draw(st.sampled_from(["200", "204", "404", "301"])), draw(values)],
        "rewrite": lambda: [
            draw(st.sampled_from(["^/old/(.*)$", "^/a$", "(", "^/x{2}$"])),
            draw(st.sampled_from(["/new/$1", "/b", "http://$host/c"])),
            *draw(st.sampled_from([[], ["last"], ["permanent"], ["sideways"]])),
        ],
        "try_files": lambda: ["$uri", draw(st.sampled_from(["=404", "/index.html", "@x"]))],
        "expires": lambda: [draw(st.sampled_from(["30d", "off", "max", "-1", "1h", "soon"]))],
        "gzip": lambda: [draw(st.sampled_from(["on", "off", "maybe"]))],
        "client_max_body_size": lambda: [draw(st.sampled_from(["10m", "0", "1g", "big"]))],
        "proxy_pass": lambda: [draw(upstreams())],
        "proxy_set_header": lambda: ["X-Real-IP", draw(st.sampled_from(["$remote_addr", "x"]))],
        "fastcgi_pass": lambda: [draw(st.sampled_from(["8.8.8.8:9000", "unix:/run/x.sock"]))],
        "fastcgi_param": lambda: [
            draw(st.sampled_from(["SCRIPT_NAME", "PHP_VALUE", "php_admin_value"])),
            draw(values),
        ],
        "root": lambda: [draw(st.sampled_from([f"{site_dir}/public/x", "/etc", site_dir]))],
        "alias": lambda: [draw(st.sampled_from([f"{site_dir}/files/", "/root/"]))],
        "access_log": lambda: [
            draw(st.sampled_from([f"{log_dir}/{site_dir.rsplit('/', 1)[1]}.a.log", "/tmp/x"]))
        ],
        "allow": lambda: [draw(st.sampled_from(["10.0.0.0/8", "all", "::1", "nope"]))],
        "deny": lambda: ["all"],
        "autoindex": lambda: [draw(st.sampled_from(["on", "off"]))],
        "index": lambda: ["index.html"],
        "include": lambda: ["/etc/nginx/mime.types"],
        "client_body_temp_path": lambda: ["/some/root/dir"],
        "listen": lambda: ["8081"],
        "server_name": lambda: [OTHER],
        "location": lambda: [],
    }
    name = draw(st.sampled_from(sorted(choices)))
    if name == "location" or depth == 0:
        sub = f"{prefix}{draw(LABEL)}/"
        modifier = draw(st.sampled_from(["", "^~ ", "= ", "~ ^"]))
        inner = draw(
            st.lists(
                statement(prefix=sub, depth=depth + 1, site_dir=site_dir, log_dir=log_dir),
                max_size=3 if depth < 2 else 0,
            )
        )
        head = f"location {modifier}{sub}"
        return f"{head} {{\n" + "".join(inner) + "}\n"
    args = [arg_text(draw, a) for a in choices[name]()]
    return " ".join([name, *args]) + ";\n"


@st.composite
def raw_texts(draw, site_dir: str, log_dir: str) -> str:
    parts = draw(
        st.lists(statement(prefix="/", depth=0, site_dir=site_dir, log_dir=log_dir), max_size=3)
    )
    if draw(st.integers(0, 9)) == 0:  # a stray piece of syntax somewhere
        i = draw(st.integers(0, len(parts)))
        parts.insert(i, draw(st.sampled_from(["}\n", "{\n", ";\n", '"', "server {\n", "#x\n"])))
    return "".join(parts)


class TestRawDirectives:
    DOMAIN = "admin-site.example.com"

    @props
    @given(data=st.data())
    def test_accepted_raw_directives_render_what_nginx_accepts_and_nothing_more(
        self, nginx_ut, data
    ):
        context = site_context(nginx_ut, self.DOMAIN)
        text = data.draw(raw_texts(context.site_dir, context.log_dir))
        try:
            statements = check_directives(text, context)
        except ValidationError:
            return
        vhost, _revision = nginx_ut.render(site(self.DOMAIN, (), raw=text))
        result = nginx_ut.check(vhost)
        assert result.returncode == 0, (result.stderr, text, vhost)
        (block,) = assert_only_the_sites_names(vhost, [self.DOMAIN], nginx_ut.listen)
        # The rendered statements are the checked ones: same blocks, lines and arguments.
        # After listen, server_name, root, index, location /; before the ACME challenge and
        # the probe.
        raw = block["block"][5:-2]
        assert strip_lines(raw) == strip_lines(statements)

    @props
    @given(text=st.text(alphabet="location /ab{}; \"'\\$#\n\tserverinclude_-=~^*@", max_size=60))
    def test_any_text_accepted_is_contained(self, nginx_ut, text):
        context = site_context(nginx_ut, self.DOMAIN)
        try:
            check_directives(text, context)
        except ValidationError:
            return
        vhost, _ = nginx_ut.render(site(self.DOMAIN, (), raw=text))
        assert nginx_ut.check(vhost).returncode == 0, vhost
        assert_only_the_sites_names(vhost, [self.DOMAIN], nginx_ut.listen)


@pytest.mark.parametrize(
    "text, why",
    [
        ("client_body_temp_path /some/root/dir;", "temporary-file paths belong to the server"),
        ("location /t/ { client_body_temp_path /some/root/dir; }", "temporary-file paths"),
        (
            'return 200 "a";\n}\nserver { listen 80; server_name other-customer.example; '
            "return 200 x; }",
            "Line 2: this '}' closes the site's server block",
        ),
        ("location /x/ { proxy_pass http://127.0.0.1:8000/; }", "127.0.0.1 is a loopback"),
        ("location /x/ { proxy_pass http://[::ffff:127.0.0.1]/; }", "loopback"),
        ("location /x/ { proxy_pass http://127.1/; }", "not an IP address nginx reads"),
        ("location /x/ { proxy_pass http://10.1.2.3/; }", "a private address"),
        ("location /x/ { proxy_pass http://169.254.169.254/; }", "a link-local address"),
        ("location /x/ { proxy_pass http://localhost:8000/; }", "host name"),
        ("location /x/ { proxy_pass http://$arg_to/; }", "cannot contain variables"),
        (f"location /x/ {{ proxy_pass http://{SERVER_ADDRESS}/; }}", "own server"),
        (
            "location ~ \\.php$ { fastcgi_pass unix:/run/php/other-site.sock; }",
            "unix sockets are refused",
        ),
        (
            'location ~ \\.php$ { fastcgi_param PHP_VALUE "auto_prepend_file=/etc/passwd"; }',
            "PHP_VALUE changes PHP's settings",
        ),
        ("location /p/ { fastcgi_param PHP_ADMIN_VALUE x; }", "PHP_ADMIN_VALUE"),
        ("location /i/ { include /etc/shadow; }", "include: not allowed"),
        ("load_module /tmp/evil.so;", "load_module: not allowed"),
        ("location /a/ { alias /home/other/; }", "is outside"),
        ("location /a/ { root /srv/www/../../etc; }", "cannot contain '.' or '..'"),
        ("location /l/ { access_log /etc/passwd; }", "is outside"),
        ("location /l/ { error_log /srv/www/x.log; }", "is outside"),
        ("location /n/ { server_name other-customer.example; }", "server_name: not allowed"),
        ("location /n/ { listen 8080 default_server; }", "listen: not allowed"),
        ("location = /.well-known/hosting-panel/probe { return 200; }", "belongs to the panel"),
        ("location / { return 200; }", "already rendered"),
        ("location /a { return 200 x\\n; }", "backslash"),
        ("location /a { add_header X-Panel-Revision fake; }", "set by the server"),
        ("gzip on;", "only location blocks"),
        ("location /a { if ($host) { return 200; } }", "if: not allowed"),
    ],
)
def test_raw_directive_reproducers_are_refused_with_the_line_and_reason(nginx_ut, text, why):
    with pytest.raises(ValidationError) as caught:
        check_directives(text, site_context(nginx_ut, "victim.example.com"))
    assert why in " ".join(caught.value.messages), caught.value.messages
    assert all(m.startswith("Line ") for m in caught.value.messages)


def test_rendering_keeps_stored_text_inside_the_server_block(nginx_ut):
    """Text stored around the services (no allow-list) is still rendered from its parse: an
    escape is refused outright, and quotes cannot smuggle in a line."""
    escape = 'return 200 "a";\n}\nserver { listen 80; server_name other-customer.example; }'
    with pytest.raises(ValidationError, match="closes the site's server block"):
        render_vhost(site("a.example.com", (), raw=escape), nginx_ut.listen, "/srv/www")
    smuggled = "location /q { return 200 'a\";\n}\nserver { server_name x; '; }"
    with pytest.raises(ValidationError):
        render_vhost(site("a.example.com", (), raw=smuggled), nginx_ut.listen, "/srv/www")
    assert parse_directives('location /q { return 200 "a;}"; }')[0]["block"][0]["args"] == [
        "200",
        "a;}",
    ]


def test_static_cache_location_is_the_one_raw_directives_see(nginx_ut):
    taken = rendered_locations(parse_options({"static_cache_days": 3}))
    assert ("~*", STATIC_FILES) in taken


# -- through the service and the apply engine, over SSH ---------------------------------------


@pytest.mark.django_db
class TestApplied:
    def test_customer_options_reach_the_server_and_every_name_answers(
        self, web_server, nginx, customer, q_sync, django_capture_on_commit_callbacks
    ):
        from websites import services

        domain = "shop.example.com"
        nginx.page(domain, "shop home", customer.account_name)
        shop = Website.objects.create(
            domain=domain, aliases=f"www.{domain}", server=web_server, owner=customer
        )
        data = {
            "www_redirect": "to_apex",
            "headers": [{"name": "X-Content-Type-Options", "value": "nosniff"}],
        }
        with django_capture_on_commit_callbacks(execute=True):
            services.do_update_website(shop, actor=customer, data={"options": data})
        shop.refresh_from_db()
        # The engine verified the probe of both names before it reported the site active.
        assert shop.status == "active", shop.status_message
        status, headers, _ = http_get(nginx.port, f"www.{domain}", "/x")
        assert status == 301 and headers["location"] == f"http://{domain}/x"
        status, headers, body = http_get(nginx.port, domain)
        assert (status, body) == (200, b"shop home")
        assert headers["x-content-type-options"] == "nosniff"

    def test_text_stored_around_the_service_cannot_leave_its_server_block(
        self, web_server, nginx, admin_user
    ):
        from servers import connection
        from servers.engine.engine import Engine

        nginx.page("victim.example.com", "victim", admin_user.account_name)
        Website.objects.create(domain="victim.example.com", server=web_server, owner=admin_user)
        bad = Website.objects.create(
            domain="attacker.example.com",
            server=web_server,
            owner=admin_user,
            custom_directives=(
                'return 200 "a";\n}\nserver {\n listen 80;\n server_name victim.example.com;\n'
                ' return 200 "owned";\n'
            ),
        )
        web_server.refresh_from_db()
        result = Engine(web_server, connection.open_transport(web_server)).apply()
        assert set(result.failed_units) == {bad.unit}
        assert "closes the site's server block" in result.failed_units[bad.unit]
        assert not (nginx.sites / "attacker.example.com.conf").exists()
        assert nginx.get("victim.example.com") == (200, "victim")
