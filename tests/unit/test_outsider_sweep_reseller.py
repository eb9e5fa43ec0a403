"""The outsider sweep as an unrelated reseller (its own file: parallel workers share the
sweeps, which are the longest tests of the suite)."""

from tests.unit.test_outsider_sweep import outsiders, sweep_as_outsider, victims  # noqa: F401


def test_outsiders_reach_nothing_as_a_reseller(victims, outsiders):  # noqa: F811 - fixtures
    sweep_as_outsider(victims, outsiders, "reseller")
