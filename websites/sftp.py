"""SFTP for system accounts: one sshd ``Match User`` block per account, chrooted to its home
with ``internal-sftp`` forced, written by the apply engine into the directory sshd includes
and validated with ``sshd -t`` before sshd is reloaded.

sshd scopes a ``Match`` block in an included file to that file, so Debian's
``Include /etc/ssh/sshd_config.d/*.conf`` (at the top of sshd_config) is enough.
"""

from __future__ import annotations

from pathlib import Path

from servers.engine import IncludeDirService, ManagedFile, ProfileKey, ServiceRun, Step, fill
from servers.engine.profile import Profile
from websites.models import SystemAccount

RELOAD_SCRIPT = Path(__file__).with_name("sshd_reload.sh").read_text()
HEADER = "# Managed by the hosting panel: changes here are reported as drift and undone.\n"


class SshdService(IncludeDirService):
    name = label = "sshd"
    reload_order = 60
    profile_keys = (
        ProfileKey("sshd_conf", "/etc/ssh/sshd_config", "path", "sshd's main configuration."),
        ProfileKey(
            "sshd_dir", "/etc/ssh/sshd_config.d", "path", "Managed Match blocks (SFTP chroots)."
        ),
        ProfileKey("sshd_test", ["sshd", "-t", "-f", "{conf}"], "command", "Validates {conf}."),
        ProfileKey("sshd_pid_file", "/run/sshd.pid", "path", "The listener's pid."),
    )

    def main_conf(self, profile: Profile) -> str:
        return profile.sshd_conf

    def include_dir(self, profile: Profile) -> str:
        return profile.sshd_dir.rstrip("/")

    def test_argv(self, profile: Profile, conf: str) -> list[str]:
        return fill(profile.sshd_test, conf=conf)

    def include_hint(self, profile: Profile) -> str:
        return f"Include {self.include_dir(profile)}/*.conf"

    def reload_step(self, run: ServiceRun) -> Step:
        argv = ["sh", "-c", RELOAD_SCRIPT, "sshd-reload", run.profile.sshd_pid_file, "10"]
        return Step(argv, 40)


def render_match(name: str, home: str, *, allowed: bool) -> str:
    lines = [
        f"Match User {name}",
        f"    ChrootDirectory {home}",
        "    ForceCommand internal-sftp",
        f"    AuthorizedKeysFile {home}/.ssh/authorized_keys",
        "    AllowTcpForwarding no",
        "    AllowAgentForwarding no",
        "    X11Forwarding no",
        "    PermitTTY no",
    ]
    if allowed:
        lines.append("    PasswordAuthentication yes")
    else:  # the plan has no SFTP: no way to authenticate at all
        lines += [
            "    PasswordAuthentication no",
            "    PubkeyAuthentication no",
            "    KbdInteractiveAuthentication no",
        ]
    return HEADER + "\n".join(lines) + "\n"


class SftpFiles:
    """One file per system account: ``<sshd_dir>/panel-<name>.conf`` (unit ``sftp:<uuid>``)."""

    unit_prefix = "sftp:"
    profile_keys = ()

    def files(self, server, profile, units):
        from websites.plans import plan_of
        from websites.sysaccounts import home_of

        accounts = SystemAccount.objects.filter(server=server).select_related("user")
        if units is not None:
            accounts = accounts.filter(
                uuid__in=[
                    u.removeprefix(self.unit_prefix)
                    for u in units
                    if u.startswith(self.unit_prefix)
                ]
            )
        for account in accounts.order_by("name"):
            plan = plan_of(account.user)
            allowed = plan is None or plan.sftp_allowed
            text = render_match(account.name, home_of(server, account.name), allowed=allowed)
            yield ManagedFile(
                path=f"{profile.sshd_dir.rstrip('/')}/panel-{account.name}.conf",
                content=text.encode(),
                service="sshd",
                unit=account.unit,
            )

    def report(self, server, ok: set[str], failed: dict[str, str]) -> None:
        for unit, message in sorted(failed.items()):
            if not unit.startswith(self.unit_prefix):
                continue
            SystemAccount.objects.filter(
                server=server, uuid=unit.removeprefix(self.unit_prefix)
            ).update(status=SystemAccount.Status.FAILED, status_message=message[:4000])
