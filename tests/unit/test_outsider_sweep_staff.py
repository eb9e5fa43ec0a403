"""The sweep as support (reads, changes nothing, never sees a secret) and as an
administrator (never sees a stored secret); its own file, so that parallel workers share
the sweeps."""

from tests.unit.test_outsider_sweep import (  # noqa: F401 - fixtures
    outsiders,
    sweep_as_administrator,
    sweep_as_support,
    victims,
)


def test_support_reads_but_changes_nothing_and_never_sees_secrets(victims, outsiders):  # noqa: F811
    sweep_as_support(victims, outsiders)


def test_administrators_never_see_stored_secrets(victims, admin_user):  # noqa: F811
    sweep_as_administrator(victims, admin_user)
