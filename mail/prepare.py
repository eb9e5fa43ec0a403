""" "Prepare for mail": make a Debian or Ubuntu server a mail server, over its transport.

Installs what is missing of Postfix, Dovecot (IMAP, LMTP, sieve, ManageSieve) and OpenDKIM
(dpkg asked first, apt-get through servers/prepare.py's helpers), makes the system user that
owns the maildirs and the directories the panel writes to, applies the unit ``mail:config``
(main.cf, master.cf, dovecot.conf, opendkim.conf from mail/conf/, each checked by the
program's own tool before the swap) with the maps through the apply engine, and only once
that succeeded records the server as prepared (``Server.components["mail"]``; until then
what the configuration needs is in ``components["mail_preparing"]``). Without systemd the
reload scripts start the programs by their own commands; with it, systemd starts them first.
"""

from __future__ import annotations

from django.utils import timezone

from core.operations import OperationContext, OperationError
from mail import config
from mail.models import CONFIG_UNIT, MAPS_UNIT
from servers import facts as server_facts
from servers.engine import profile_for
from servers.engine.state import mark_dirty
from servers.models import Server
from servers.prepare import SUPPORTED, finish_interrupted_dpkg, install, installed_versions
from servers.transport import Transport, TransportError

PACKAGES = (
    "postfix",
    "dovecot-imapd",
    "dovecot-lmtpd",
    "dovecot-sieve",
    "dovecot-managesieved",
    "opendkim",
    "opendkim-tools",
    "python3",  # the panel's policy service (mail/conf/panel-policy.py)
)
SYSTEMD_UNITS = ("dovecot", "opendkim", "postfix")


def _tail(text: str, lines: int = 6) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])[:1500]


def ensure_vmail(t: Transport, user: str) -> int:
    """The system user owning the maildirs (made when missing): its uid."""
    res = t.run(["id", "-u", "--", user])
    if not res.ok:
        t.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell",
               "/usr/sbin/nologin", "--", user]).check()  # fmt: skip
        res = t.run(["id", "-u", "--", user]).check()
    return int(res.stdout.strip())


def make_directories(t: Transport, profile) -> None:
    """What the configuration names and the programs do not make themselves."""
    from mail.apply import _checked_path

    for key, mode in (
        ("mail_map_dir", 0o755),
        ("dovecot_sieve_dir", 0o755),
        ("dovecot_users_dir", 0o750),
        ("opendkim_dir", 0o755),
        ("opendkim_key_dir", 0o750),
        ("vmail_base", 0o750),
        ("postfix_queue_dir", 0o755),
        ("postfix_data_dir", 0o755),
    ):
        t.makedirs(_checked_path(getattr(profile, key), key), mode)
    vmail = _checked_path(profile.vmail_base, "vmail_base")
    t.run(["chown", f"{profile.vmail_user}:{profile.vmail_user}", "--", vmail]).check()
    t.run(["chown", "postfix", "--", _checked_path(profile.postfix_data_dir, "")]).check()
    # The apply engine writes only below root-owned directories: OpenDKIM reads its keys
    # (its own, mode 0600) through the group.
    keys = _checked_path(profile.opendkim_key_dir, "opendkim_key_dir")
    t.run(["chgrp", "--", profile.opendkim_user, keys]).check()
    state = _checked_path(profile.mail_policy_state_dir, "mail_policy_state_dir")
    t.makedirs(state, 0o700)
    t.run(["chown", "nobody:nogroup", "--", state]).check()  # the policy service's user
    users = _checked_path(profile.dovecot_users_dir, "dovecot_users_dir")
    t.run(["chgrp", "--", profile.dovecot_group, users]).check()
    # opendkim -n wants the tables before the first apply; the setup hook reads SenderLogins.
    for name in ("KeyTable", "SigningTable", config.SENDER_LOGINS):
        path = f"{_checked_path(profile.opendkim_dir, 'opendkim_dir')}/{name}"
        if t.read_file(path) is None:
            t.write_file(path, b"")


def prepare_mail(ctx: OperationContext, server_id: int) -> str:
    server = Server.objects.get(pk=server_id)
    from servers import connection
    from servers.tasks import run_apply

    ctx.progress(5, f"Connecting to {server.address}:{server.ssh_port}")
    try:
        t = connection.open_transport(server)
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    profile = profile_for(server)
    try:
        ctx.progress(15, "Reading the operating system")
        found = server_facts.gather(t)
        distro = found.get("distribution", "unknown")
        if distro not in SUPPORTED:
            raise OperationError(
                f"{found.get('pretty_name') or distro} is not supported: Prepare for mail knows "
                "Debian and Ubuntu (apt and dpkg)."
            )
        finish_interrupted_dpkg(ctx, t, profile)
        ctx.progress(25, f"Checking {', '.join(PACKAGES)} with dpkg")
        have = installed_versions(t, list(PACKAGES))
        missing = [p for p in PACKAGES if p not in have]
        if missing:
            ctx.progress(35, f"Installing {', '.join(missing)}")
            install(ctx, t, missing)
            have = installed_versions(t, list(PACKAGES))
            still = [p for p in PACKAGES if p not in have]
            if still:
                raise OperationError(f"{', '.join(still)} still not installed after apt-get")
        else:
            ctx.log("Postfix, Dovecot and OpenDKIM are installed already: nothing to install")
        ctx.progress(60, "Making the vmail user and the panel's directories")
        uid = ensure_vmail(t, profile.vmail_user)
        make_directories(t, profile)
        systemd = t.run(["test", "-d", "/run/systemd/system"]).ok
        if systemd:
            res = t.run(["systemctl", "start", *SYSTEMD_UNITS], timeout=300)
            if not res.ok:
                raise OperationError(f"systemctl start failed: {_tail(res.stderr or res.stdout)}")
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    # What rendering mail:config needs, kept apart from components["mail"]: the server counts
    # as prepared (usage reads, the mail card) only once the apply below succeeded.
    setup = {"packages": {p: have[p] for p in PACKAGES}, "vmail_uid": uid}
    components = dict(server.components or {})
    components[config.PREPARING] = setup
    Server.objects.filter(pk=server.pk).update(components=components)
    ctx.progress(75, "Applying main.cf, master.cf, dovecot.conf and opendkim.conf")
    mark_dirty(server, {CONFIG_UNIT, MAPS_UNIT})
    server.refresh_from_db()
    _summary, result = run_apply(ctx, server)
    if result is not None:
        failed = {u: why for u, why in result.failed_units.items() if u in (CONFIG_UNIT, MAPS_UNIT)}
        if failed:
            raise OperationError("; ".join(f"{u}: {why}" for u, why in sorted(failed.items())))
    server.refresh_from_db()
    components = dict(server.components or {})
    components.pop(config.PREPARING, None)
    components["mail"] = {**setup, "prepared_at": timezone.now().isoformat(timespec="seconds")}
    Server.objects.filter(pk=server.pk).update(components=components)
    how = "systemd" if systemd else "their own commands"
    return f"Prepared for mail (run by {how}): " + ", ".join(f"{p} {have[p]}" for p in PACKAGES)
