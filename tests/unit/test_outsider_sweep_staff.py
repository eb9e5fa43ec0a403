"""The sweep as an administrator (never sees a stored secret); its own file, so that
parallel workers share the sweeps. Support's sweep: test_outsider_sweep_support_*.py."""

from tests.unit.test_outsider_sweep import sweep_as_administrator, victims  # noqa: F401


def test_administrators_never_see_stored_secrets(victims, admin_user):  # noqa: F811
    sweep_as_administrator(victims, admin_user)
