"""Property tests for every validator that guards a name, path, address or text.

Whatever a validator accepts must be exactly what it claims: one line, no control or
invisible characters, nothing after the pattern (``$`` would let ``"/srv/www\\n"`` through),
and addresses as ``ipaddress`` reads them, without IPv6 zone ids.
"""

from __future__ import annotations

import ipaddress
import unicodedata

import pytest
from django.core.exceptions import ValidationError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from accounts.validators import parse_cidrs
from core.validators import refuse_nul, validate_multiline_text, validate_plain_text
from servers.models import validate_comment
from servers.validators import (
    validate_abs_path,
    validate_address,
    validate_cidr,
    validate_server_name,
    validate_unix_user,
)

LINE_VALIDATORS = [
    validate_address,
    validate_unix_user,
    validate_server_name,
    validate_abs_path,
    validate_cidr,
    validate_comment,
    validate_plain_text,
]
SUFFIXES = ["\n", "\r\n", "\x00", " ; rm -rf /", "\u202e", "%eth0"]
fast = settings(max_examples=300, deadline=None)


def accepts(validator, value) -> bool:
    try:
        validator(value)
    except ValidationError:
        return False
    return True


def invisible(value: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value)


@pytest.mark.parametrize("validator", LINE_VALIDATORS, ids=lambda v: v.__name__)
@fast
@given(value=st.text(max_size=80))
@example(value="/srv/www\n")
@example(value="edge-1\n")
@example(value="10.0.0.0/8\n")
def test_accepted_values_are_single_clean_lines(validator, value):
    if accepts(validator, value):
        assert not invisible(value) and "\n" not in value


@pytest.mark.parametrize("validator", LINE_VALIDATORS[:-1], ids=lambda v: v.__name__)
@pytest.mark.parametrize("suffix", SUFFIXES)
@fast
@given(value=st.text(alphabet="abcdefgh0123456789./-_", min_size=1, max_size=30))
def test_nothing_can_be_appended_to_an_accepted_value(validator, suffix, value):
    if accepts(validator, value):
        assert not accepts(validator, value + suffix)


@fast
@given(st.ip_addresses())
def test_addresses_round_trip(addr):
    assert accepts(validate_address, str(addr))
    assert accepts(validate_cidr, str(addr))
    assert not accepts(validate_address, f"{addr}%eth0")
    assert not accepts(validate_cidr, f"{addr}%1/64")


@fast
@given(value=st.text(max_size=40))
def test_cidr_accepts_only_what_ipaddress_reads_exactly(value):
    if accepts(validate_cidr, value):
        assert str(ipaddress.ip_network(value, strict=False)) and "%" not in value
        assert value == value.strip()


@fast
@given(value=st.text(max_size=60))
def test_allowlist_networks_have_no_zone(value):
    try:
        networks = parse_cidrs(value)
    except ValidationError:
        return
    assert all("%" not in str(n) for n in networks)


@fast
@given(
    value=st.text(max_size=40),
    bad=st.characters(categories=["Cc", "Cf"]).filter(lambda c: c not in "\n\r\t"),
)
def test_names_refuse_every_control_and_format_character(value, bad):
    assert not accepts(validate_plain_text, value + bad)
    assert not accepts(validate_multiline_text, bad + value)


@fast
@given(value=st.text(alphabet=st.characters(categories=["L", "N", "Zs", "P"]), max_size=40))
def test_ordinary_names_pass(value):
    assert accepts(validate_plain_text, value)


@fast
@given(
    st.recursive(
        st.text(max_size=5) | st.integers() | st.none(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=10,
    )
)
def test_refuse_nul_finds_nul_anywhere_in_json(value):
    def contains_nul(v) -> bool:
        if isinstance(v, str):
            return "\x00" in v
        if isinstance(v, dict):
            return any(contains_nul(k) or contains_nul(i) for k, i in v.items())
        if isinstance(v, list):
            return any(contains_nul(i) for i in v)
        return False

    assert accepts(refuse_nul, value) == (not contains_nul(value))


@pytest.mark.parametrize(
    "host", ["127.1", "2130706433", "0x7f.0.0.1", "localhost.\n", "-bad.example", "a" * 64]
)
def test_host_names_that_resolvers_read_as_numbers_are_refused(host):
    assert not accepts(validate_address, host)
