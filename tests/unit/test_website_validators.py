"""Property tests for websites/validators.py and the raw-directive parser (finding 14's class,
finding 2): whatever is accepted is whole (``fullmatch``: no trailing newline), one plain
value, and is written back as exactly the tokens that were checked."""

from __future__ import annotations

import ipaddress
import tempfile

import crossplane
import pytest
from django.core.exceptions import ValidationError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from websites.directives import contained_statements, quote, render_directives
from websites.options import parse_options
from websites.validators import (
    parse_upstream_url,
    upstream_host_problem,
    validate_auth_user,
    validate_bcrypt_hash,
    validate_domain,
    validate_domain_list,
    validate_header_name,
    validate_header_value,
    validate_url_path,
)

fast = settings(max_examples=200, deadline=None)
ONE_VALUE = [
    validate_domain,
    validate_header_name,
    validate_header_value,
    validate_url_path,
    validate_auth_user,
]
NGINX_SYNTAX = set(";{}\"'\\$#\n\r\t\x00")


def accepts(validator, value) -> bool:
    try:
        validator(value)
    except ValidationError:
        return False
    return True


def tokens(text: str) -> list[tuple[str, bool]]:
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write(text)
        f.flush()
        return [(t, quoted) for t, _line, quoted in crossplane.lex(f.name)]


@pytest.mark.parametrize("validator", ONE_VALUE, ids=lambda v: v.__name__)
@fast
@given(value=st.text(max_size=60))
@example(value="example.com\n")
@example(value="/srv/www\n")
@example(value="X-Frame-Options\n")
def test_accepted_values_are_one_line_without_nginx_syntax(validator, value):
    if accepts(validator, value):
        assert not (set(value) & (NGINX_SYNTAX - {"'", "#", ";", "{", "}"}))
        assert "\n" not in value and value == value.strip()


@pytest.mark.parametrize("validator", ONE_VALUE, ids=lambda v: v.__name__)
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", '"', "\\", "$x"])
@fast
@given(value=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}\.[a-z]{2,5}", fullmatch=True))
def test_nothing_can_be_appended(validator, suffix, value):
    for candidate in (value, f"/{value}", f"X-{value.replace('.', '-')}"):
        if accepts(validator, candidate):
            assert not accepts(validator, candidate + suffix)


@fast
@given(value=st.text(alphabet="abcxyz019.-\n \t", max_size=40))
def test_domains_are_lowercase_names(value):
    if accepts(validate_domain, value):
        assert value == value.lower() and value.strip() == value and " " not in value
        assert all(0 < len(label) <= 63 for label in value.split("."))
    if accepts(validate_domain_list, value):
        assert all(accepts(validate_domain, v) for v in value.split())


@fast
@given(name=st.text(max_size=20), value=st.text(max_size=40))
def test_an_accepted_header_is_exactly_two_tokens_in_its_line(name, value):
    if accepts(validate_header_name, name) and accepts(validate_header_value, value):
        line = f'add_header {name} "{value}" always;'
        assert tokens(line) == [
            ("add_header", False),
            (name, False),
            (value, True),
            ("always", False),
            (";", False),
        ]


@fast
@given(addr=st.ip_addresses(), port=st.integers(1, 65535), path=st.sampled_from(["", "/", "/x/"]))
def test_upstream_addresses_pass_only_when_public(addr, port, path):
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    scheme, found, got_port, got_path = parse_upstream_url(f"http://{host}:{port}{path}")
    assert (scheme, ipaddress.ip_address(found), got_port, got_path) == ("http", addr, port, path)
    problem = upstream_host_problem(found, hostnames=False, refused=frozenset())
    inner = addr.ipv4_mapped if addr.version == 6 and addr.ipv4_mapped else addr
    if not problem:
        assert inner.is_global and not inner.is_private and not inner.is_loopback


@fast
@given(value=st.text(alphabet="htps:/[]0123456789abcdef.@%?#$ \n", max_size=40))
def test_upstream_urls_are_plain(value):
    try:
        _scheme, host, _port, path = parse_upstream_url(value)
    except ValidationError:
        return
    assert not set(value) & set("@%?#$ \n") and value.startswith(("http://", "https://"))


@fast
@given(
    data=st.fixed_dictionaries(
        {},
        optional={
            "gzip": st.booleans(),
            "max_body_mb": st.integers(-5, 5000),
            "headers": st.lists(
                st.fixed_dictionaries({"name": st.text(max_size=8), "value": st.text(max_size=8)}),
                max_size=3,
            ),
            "error_pages": st.lists(
                st.fixed_dictionaries(
                    {"code": st.integers(399, 505), "path": st.text("/ab.", max_size=8)}
                ),
                max_size=3,
            ),
        },
    )
)
def test_stored_options_read_back_the_same(data):
    try:
        options = parse_options(data)
    except ValidationError:
        return
    assert parse_options(options.to_json()) == options


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="location /ab{}; \"'\\$#\n\tx~^=*@é\u00a0", max_size=50))
@example(text='location /q { return 200 "a;}"; }')
@example(text="location /q { return 200 'a\";\n}\nserver { server_name x; '; }")
def test_rendered_directives_parse_back_to_what_was_checked(text):
    """Anything that renders at all renders as the same blocks, statements and arguments:
    no quote, brace, semicolon or comment in an argument can change the structure."""
    try:
        statements = contained_statements(text)
    except ValidationError:
        return
    again = contained_statements(render_directives(statements, depth=0))

    def shape(items):
        return [(s["directive"], s["args"], shape(s.get("block", []))) for s in items]

    assert shape(again) == shape(statements)


@fast
@given(arg=st.text(max_size=20))
def test_quote_gives_one_token(arg):
    from websites.directives import _token_problem

    if _token_problem(arg):
        return
    assert [t for t, _q in tokens(f"x {quote(arg)};")][1:] == [arg, ";"]


@fast
@given(name=st.text(max_size=40), hashed=st.text(max_size=70))
@example(name="bob", hashed="$2b$08$" + "a" * 53 + "\n")
@example(name="bob:x", hashed="$2y$10$" + "a" * 53)
def test_a_password_file_line_is_one_name_and_one_hash(name, hashed):
    """nginx splits each line at the first ':': neither part may hold one, nor a newline."""
    if accepts(validate_auth_user, name) and accepts(validate_bcrypt_hash, hashed):
        line = f"{name}:{hashed}\n"
        assert line.count(":") == 1 and line.count("\n") == 1
        assert hashed.startswith(("$2b$", "$2y$")) and len(hashed) == 60
