"""Brute-force protection on prepared servers: fail2ban jails for sshd and nginx basic auth,
written by the apply engine into ``<fail2ban_conf_dir>/jail.d/hosting-panel.local``,
validated with ``fail2ban-client -t`` on a copy of the configuration with the new file in
place, loaded with ``fail2ban-client reload`` and verified by asking fail2ban for its jails.

Bans are read and lifted by Operations (views never open connections): ``refresh_bans``
stores what fail2ban says on ``Server.bans``, ``unban`` runs ``set JAIL unbanip ADDRESS``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from django.core.exceptions import ValidationError
from django.utils import timezone

from core.operations import OperationContext, OperationError
from servers.engine import ManagedFile, ProfileKey, Service, ServiceRun, Step, UnitFailed
from servers.engine.contracts import Job, StepResult
from servers.models import Server
from servers.transport import Transport, TransportError

UNIT = "fail2ban:jails"
FILE_NAME = "hosting-panel.local"
JAILS = ("sshd", "nginx-http-auth")
ACTION = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
TEST_SCRIPT = Path(__file__).with_name("fail2ban_test.sh").read_text()
HEADER = "# Managed by the hosting panel: changes here are reported as drift and undone.\n"


def client(profile) -> list[str]:
    return ["fail2ban-client", "-s", profile.fail2ban_socket]


def render_jails(profile) -> str:
    action = profile.fail2ban_banaction
    if not ACTION.fullmatch(action):
        raise ValidationError(f"fail2ban_banaction {action!r} is not an action name.")
    common = (
        "enabled = true\n"
        "backend = auto\n"
        f"banaction = {action}\n"
        f"maxretry = {profile.fail2ban_maxretry}\n"
        "findtime = 10m\n"
        f"bantime = {profile.fail2ban_bantime}\n"
    )
    # Basic-auth failures land in nginx's error logs: the main one and each site's.
    site_logs = f"{profile.webroot_base.rstrip('/')}/*/logs/*.error.log"
    return (
        HEADER
        + "[sshd]\n"
        + common
        + "port = ssh\n"
        + f"logpath = {profile.fail2ban_sshd_log}\n\n"
        + "[nginx-http-auth]\n"
        + common
        + "port = http,https\n"
        + f"logpath = {profile.nginx_error_log}\n"
        + f"          {site_logs}\n"
    )


class Fail2banFiles:
    """One file per prepared server (unit ``fail2ban:jails``)."""

    unit_prefix = "fail2ban:"
    # The service has fail2ban's own. Prepare server's dpkg (it installs fail2ban) is here:
    # a setting needs a registered provider or service, and prepare has neither.
    profile_keys = (
        ProfileKey(
            "dpkg",
            ["dpkg"],
            "command",
            "dpkg as Prepare server runs it (--audit; --configure -a after an interrupted "
            "install).",
        ),
    )

    def files(self, server, profile, units):
        if units is not None and UNIT not in units:
            return
        if not server.components:  # not prepared by the panel: fail2ban is not ours
            return
        try:
            text = render_jails(profile)
        except ValidationError as exc:
            yield UnitFailed(UNIT, " ".join(exc.messages))
            return
        yield ManagedFile(
            path=f"{profile.fail2ban_conf_dir.rstrip('/')}/jail.d/{FILE_NAME}",
            content=text.encode(),
            service=Fail2banService.name,
            unit=UNIT,
        )

    def report(self, server, ok: set[str], failed: dict[str, str]) -> None:
        """Nothing on a row: the operation's result says how the jails went."""


class Fail2banService(Service):
    name = "fail2ban"
    reload_order = 80
    validated_by_jobs = True
    profile_keys = (
        ProfileKey("fail2ban_conf_dir", "/etc/fail2ban", "path", "fail2ban's configuration."),
        ProfileKey(
            "fail2ban_socket", "/var/run/fail2ban/fail2ban.sock", "path", "fail2ban's socket."
        ),
        ProfileKey(
            "fail2ban_banaction",
            "nftables-multiport",
            "text",
            "The action.d name bans use (e.g. nftables-multiport, iptables-multiport).",
        ),
        ProfileKey(
            "fail2ban_start",
            ["fail2ban-client", "-x", "-c", "{conf}", "-s", "{socket}", "start"],
            "command",
            "Starts fail2ban where there is no systemd (Prepare server, when it is not running).",
        ),
        ProfileKey("fail2ban_sshd_log", "/var/log/auth.log", "path", "sshd's log."),
        ProfileKey("fail2ban_maxretry", 5, "seconds", "Failures before a ban."),
        ProfileKey("fail2ban_bantime", 3600, "seconds", "How long a ban lasts."),
    )

    def validation_jobs(self, run: ServiceRun) -> list[Job]:
        if not run.files and not run.removed:
            return []
        conf = run.profile.fail2ban_conf_dir.rstrip("/")
        body = b"".join(f.content for f in run.files.values())
        mode = "write" if run.files else "remove"
        argv = ["sh", "-c", TEST_SCRIPT, "fail2ban-test", conf, FILE_NAME, mode, "fail2ban-client"]
        return [Job(self.name, argv, stdin=body)]

    def validate(self, run: ServiceRun) -> dict[str, str]:
        result = run.jobs.pop(self.name, None)
        if result is None:
            jobs = self.validation_jobs(run)
            if not jobs:
                return {}
            job = jobs[0]
            result = run.step(Step(job.argv, 60, stdin=job.stdin))
        if result.code == 0:
            return {}
        words = result.output.strip()[-2000:] or f"exit code {result.code}"
        return {unit: f"fail2ban-client -t: {words}" for unit in run.units()}

    def reload_step(self, run: ServiceRun) -> Step:
        conf = run.profile.fail2ban_conf_dir.rstrip("/")
        return Step([*client(run.profile), "-c", conf, "reload"], 120)

    def verify_step(self, run: ServiceRun) -> Step | None:
        if not run.live_files():
            return None
        return Step([*client(run.profile), "status"], 30)

    def verify_errors(self, run: ServiceRun, result: StepResult) -> dict[str, str]:
        running = jail_list(result.output) if result.ok else []
        missing = [j for j in JAILS if j not in running]
        if not missing:
            return {}
        why = f"fail2ban runs without the jails {', '.join(missing)}: {result.output.strip()}"
        return {u: why[:2000] for u in run.units()}


def jail_list(status: str) -> list[str]:
    found = re.search(r"Jail list:\s*(.*)$", status, re.M)
    return [j.strip() for j in found.group(1).split(",") if j.strip()] if found else []


def read_bans(t: Transport, profile) -> dict[str, list[str]]:
    """jail -> banned addresses, as fail2ban says now."""
    res = t.run([*client(profile), "status"], timeout=30)
    if not res.ok:
        raise OperationError(f"fail2ban does not answer: {(res.stderr or res.stdout).strip()}")
    bans = {}
    for jail in jail_list(res.stdout):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", jail):
            continue
        out = t.run([*client(profile), "status", jail], timeout=30).check().stdout
        found = re.search(r"Banned IP list:\s*(.*)$", out, re.M)
        bans[jail] = sorted(found.group(1).split()) if found else []
    return bans


def clean_unban(data: dict) -> tuple[str, str]:
    jail, address = data.get("jail"), data.get("address")
    if jail not in JAILS:
        raise ValidationError({"jail": f"Choose one of the panel's jails: {', '.join(JAILS)}."})
    try:
        address = str(ipaddress.ip_address(address if isinstance(address, str) else ""))
    except ValueError as exc:
        raise ValidationError({"address": "Enter an IP address."}) from exc
    return jail, address


def _store(server: Server, bans: dict[str, list[str]]) -> None:
    read_at = timezone.now().isoformat(timespec="seconds")
    Server.objects.filter(pk=server.pk).update(bans={"jails": bans, "read_at": read_at})


def refresh_bans(ctx: OperationContext, server_id: int) -> str:
    from servers.engine import profile_for
    from servers.tasks import _connect

    server = Server.objects.get(pk=server_id)
    t = _connect(ctx, server)
    try:
        bans = read_bans(t, profile_for(server))
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    _store(server, bans)
    count = sum(len(v) for v in bans.values())
    return f"{count} address{'es' if count != 1 else ''} banned"


def unban(ctx: OperationContext, server_id: int, jail: str, address: str) -> str:
    from servers.engine import profile_for
    from servers.tasks import _connect

    jail, address = clean_unban({"jail": jail, "address": address})
    server = Server.objects.get(pk=server_id)
    profile = profile_for(server)
    t = _connect(ctx, server)
    try:
        res = t.run([*client(profile), "set", jail, "unbanip", address], timeout=30)
        if not res.ok:
            raise OperationError(f"fail2ban refused: {(res.stderr or res.stdout).strip()}")
        bans = read_bans(t, profile)
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    _store(server, bans)
    if address in bans.get(jail, []):
        raise OperationError(f"{address} is still banned in {jail}")
    return f"{address} is no longer banned in {jail}"
