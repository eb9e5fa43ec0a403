"""The firewall renderer against the real nft (finding 8's renderer class): any rule set the
model's validators accept renders a ruleset ``nft -c`` accepts, with exactly one line per
rule. nft only checks (``-c``), inside a network namespace of its own."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.firewall import render
from servers.models import FirewallRule
from tests.conftest import require_real

pytestmark = [pytest.mark.integration]
PRELUDE = 10  # comment, table, delete, table {, chain {, type, 4 fixed rules


def nft_check(text: str) -> subprocess.CompletedProcess:
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(text)
        f.flush()
        argv = ["unshare", "--net", "nft", "-c", "-f", f.name]
        return subprocess.run(argv, capture_output=True, text=True)


@pytest.fixture(scope="module")
def nft():
    if not (shutil.which("nft") or shutil.which("/usr/sbin/nft")) or not shutil.which("unshare"):
        require_real("nft or unshare is not installed")
    if nft_check("table inet probe {}\n").returncode != 0:
        require_real("nft -c cannot run here")


SOURCES = st.one_of(
    st.just(""),
    st.ip_addresses().map(str),
    st.tuples(st.ip_addresses(), st.integers(0, 128)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.text(alphabet="0123456789abcdef.:/%", max_size=20),
)
COMMENTS = st.one_of(
    st.from_regex(r"[A-Za-z0-9 .,_:/()+-]{0,100}", fullmatch=True),
    st.text(max_size=30),
)
RULES = st.lists(
    st.builds(
        FirewallRule,
        position=st.integers(-1, 100_001),
        action=st.sampled_from(["allow", "deny", "reject"]),
        protocol=st.sampled_from(["tcp", "udp", "icmp"]),
        port=st.integers(0, 65536),
        port_end=st.one_of(st.none(), st.integers(0, 65536)),
        source=SOURCES,
        comment=COMMENTS,
    ),
    min_size=1,
    max_size=6,
)


def valid(rule: FirewallRule) -> bool:
    try:  # the model's field validators and clean(), without the database
        rule.clean_fields(exclude=["server", "uuid"])
        rule.clean()
    except ValidationError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(rules=RULES)
def test_accepted_rules_give_a_ruleset_nft_accepts_one_line_each(nft, rules):
    rules = [r for r in rules if valid(r)]
    if not rules:
        return
    text = render(rules)
    result = nft_check(text)
    assert result.returncode == 0, (result.stderr, text)
    lines = text.splitlines()
    assert lines[-2:] == ["  }", "}"]
    rule_lines = lines[PRELUDE:-2]
    assert len(rule_lines) == len(rules)
    ordered = sorted(rules, key=lambda r: (r.position, r.pk or 0))
    for rule, line in zip(ordered, rule_lines, strict=True):
        assert f"{rule.protocol} dport {rule.port}" in line
        assert line.count('"') == (2 if rule.comment else 0)
