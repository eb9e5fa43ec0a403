"""Part 3 of the sweep as support: reads, changes nothing, never sees a secret (the
sweep is split over files so that parallel workers share it; see SUPPORT_PARTS)."""

from tests.unit.test_outsider_sweep import outsiders, sweep_as_support, victims  # noqa: F401

PART = 2


def test_support_reads_but_changes_nothing_and_never_sees_secrets(victims, outsiders):  # noqa: F811
    sweep_as_support(victims, outsiders, PART)
