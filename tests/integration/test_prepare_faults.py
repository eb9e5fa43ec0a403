# ruff: noqa: F811 - the fixtures imported from test_server_prepare are parameters here
"""Prepare server losing its SSH connection while apt-get runs (over the loopback sshd,
against this machine's dpkg, with a private nginx tree): the Operation fails and says why,
nothing is recorded as prepared (no components, fail2ban's jails not queued), and a re-run
finishes the job (daemons started, jails applied)."""

from __future__ import annotations

import pytest

from servers import prepare as prepare_module
from servers.models import DirtyUnit
from tests.integration.faults import drop_after
from tests.integration.test_server_prepare import (  # noqa: F401 - fixtures
    daemons,
    nginx_tree,
    prepare,
    server,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_ssh_dropped_during_apt_get_then_a_rerun_finishes(
    server, nginx_tree, daemons, admin_user, q_sync, django_capture_on_commit_callbacks, monkeypatch
):
    # The first time dpkg is asked, nginx is not installed yet: apt-get must install it.
    real = prepare_module.installed_versions
    asked = []

    def nginx_missing_at_first(t, packages):
        found = real(t, packages)
        asked.append(packages)
        return {p: v for p, v in found.items() if p != "nginx"} if len(asked) == 1 else found

    monkeypatch.setattr(prepare_module, "installed_versions", nginx_missing_at_first)
    # apt-get install loses the connection (it is not run here: this machine's packages
    # are not the test's to change; nginx is installed already, as if it had finished).
    dropped = drop_after(
        monkeypatch, lambda argv: "apt-get" in argv and "install" in argv, run_it=False
    )
    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, "8.2")
    assert dropped and "nginx" in dropped[0]
    assert op.state == "failed" and "connection" in op.error, (op.error, log)
    assert "Installing nginx" in log
    server.refresh_from_db()
    assert server.components == {}
    assert not DirtyUnit.objects.filter(server=server, unit="fail2ban:jails").exists()
    assert not (nginx_tree / "conf.d" / "hosting-panel.conf").exists()

    op, log = prepare(server, admin_user, django_capture_on_commit_callbacks, "8.2")
    assert op.state == "succeeded", (op.error, log)
    server.refresh_from_db()
    assert server.components["nginx"] and server.components["php"] == ["8.2"]
    # The re-run also started the daemons and applied the jails (nothing left queued).
    assert not DirtyUnit.objects.filter(server=server, unit="fail2ban:jails").exists()
    assert (daemons["f2b"] / "conf" / "jail.d" / "hosting-panel.local").exists()
    assert (
        f"include {nginx_tree}/panel.d/*.conf;"
        in (nginx_tree / "conf.d" / "hosting-panel.conf").read_text()
    )
