"""servers.engine.publisher.bisect: a unit the target refuses fails alone, the rest go
through, each exactly once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers.engine import ApplyError
from servers.engine.publisher import Refused, bisect


class Target:
    """Refuses any message holding a bad unit (and applies nothing of it)."""

    def __init__(self, bad: set[str]) -> None:
        self.bad, self.applied, self.messages = bad, [], 0

    def send(self, units: list[str]) -> str | None:
        self.messages += 1
        if self.bad & set(units):
            return "REFUSED"
        self.applied += units
        return None


@given(
    st.lists(st.text("abc", min_size=1, max_size=4), unique=True, max_size=40).flatmap(
        lambda units: st.tuples(st.just(units), st.sets(st.sampled_from(units or ["-"])))
    )
)
def test_bad_units_fail_alone_and_the_rest_go_through_once(case):
    units, bad = case
    bad &= set(units)
    target = Target(bad)
    failed = bisect(units, target.send)
    assert failed == dict.fromkeys(bad, "REFUSED")
    assert sorted(target.applied) == sorted(set(units) - bad)  # each good unit exactly once
    assert target.messages <= max(1, 2 * len(units) - 1)
    if not bad and units:
        assert target.messages == 1


def test_a_refusal_of_the_whole_message_is_not_split():
    target = Target({"b"})
    failed = bisect(["a", "b", "c"], target.send, splittable=lambda error: False)
    assert failed == dict.fromkeys("abc", "REFUSED") and target.messages == 1


def test_nothing_sent_at_all_stays_refused():
    def send(units):
        raise Refused("connection refused")

    with pytest.raises(Refused):
        bisect(["a", "b"], send)


def test_refused_after_part_went_through_means_revert():
    """Once one message was applied, a later one that never arrives leaves part of the
    change live: that is no longer "nothing applied", and the runner must revert."""
    calls = []

    def send(units):
        calls.append(units)
        if len(calls) == 1:
            return "REFUSED"  # split
        if len(calls) == 2:
            return None  # first half applied
        raise Refused("connection refused")

    with pytest.raises(ApplyError) as caught:
        bisect(["a", "b"], send)
    assert not isinstance(caught.value, Refused)
