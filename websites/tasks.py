"""Operation tasks for websites: each runs under its server's lock, talks to the server
through the transport (system accounts, files) and the apply engine (vhost, pool, sshd)."""

from __future__ import annotations

import re

from django.db import transaction
from django.utils import timezone

from core.operations import WORKER_LOST, OperationContext, OperationError, on_worker_lost
from servers import connection
from servers.engine import profile_for
from servers.engine.state import mark_dirty
from servers.models import Server
from servers.tasks import _connect, run_apply
from servers.transport import TransportError
from websites import appsites, sysaccounts
from websites.certificates.models import Certificate
from websites.default_server import UNIT as DEFAULT_UNIT
from websites.models import SystemAccount, Website
from websites.sysaccounts import AccountError


def _account(site: Website) -> SystemAccount:
    account, _ = SystemAccount.objects.get_or_create(
        server=site.server, user=site.owner, defaults={"name": site.owner.account_name}
    )
    return account


def _fail_site(site: Website, message: str) -> None:
    Website.objects.filter(pk=site.pk).exclude(status=Website.Status.DELETING).update(
        status=Website.Status.FAILED, status_message=message[:4000]
    )


def converge_site(ctx: OperationContext, site_id: int) -> str:
    """Account, web root, then the apply of the site's vhost/pool (and the account's SFTP
    block); a health check over HTTP on the server; the account locked while every site of
    its owner there is suspended. Any failure leaves the site failed with the reason."""
    site = Website.objects.select_related("server", "owner").get(pk=site_id)
    try:
        return _converge(ctx, site)
    except Exception as exc:
        site.refresh_from_db()
        if site.status == Website.Status.PENDING:
            _fail_site(site, str(exc) or exc.__class__.__name__)
        raise


def _site_worker_lost(op, site_id: int, **_args) -> None:
    """The worker died mid-way (the vhost may be swapped in, not reloaded): the site is not
    live, so it says failed; a retry's apply finishes or undoes what the dead one began."""
    site = Website.objects.filter(pk=site_id, status=Website.Status.PENDING).first()
    if site is not None:
        _fail_site(site, WORKER_LOST)


on_worker_lost(converge_site, _site_worker_lost)


def _converge(ctx: OperationContext, site: Website) -> str:
    server = site.server
    account = _account(site)
    t = _connect(ctx, server)
    try:
        ctx.progress(20, f"Preparing the system account {account.name}")
        sysaccounts.ensure(t, server, account.name)
        sysaccounts.ensure_site(t, server, account.name, site.domain, app=site.is_app)
        others_live = (
            Website.objects.filter(server=server, owner=site.owner, suspended=False)
            .exclude(status=Website.Status.DELETING)
            .exists()
        )
        if others_live:
            sysaccounts.unlock(t, server, account.name)
            new_status = SystemAccount.Status.ACTIVE
        else:
            sysaccounts.lock(t, server, account.name)
            new_status = SystemAccount.Status.LOCKED
        SystemAccount.objects.filter(pk=account.pk).update(status=new_status, status_message="")
    except (AccountError, TransportError) as exc:
        _fail_site(site, str(exc))
        SystemAccount.objects.filter(pk=account.pk).update(
            status=SystemAccount.Status.FAILED, status_message=str(exc)[:4000]
        )
        raise OperationError(str(exc)) from exc
    ctx.progress(45, "Applying the site's configuration")
    units = {site.unit, DEFAULT_UNIT}  # a retry applies the site again
    if site.is_app:
        units.add(appsites.RUNNER_UNIT)
    mark_dirty(server, units)
    summary, result = run_apply(ctx, server)
    site.refresh_from_db()
    if site.is_app:
        store_app_state(t, server, site)
    if result is not None and site.unit in result.failed_units:
        raise OperationError(f"{site.domain}: {result.failed_units[site.unit]}")
    if site.status == Website.Status.FAILED:
        raise OperationError(f"{site.domain}: {site.status_message}")
    from websites.certificates.services import follow_tls_in_uptime_check

    follow_tls_in_uptime_check(site)  # back to http:// when its certificate is gone
    ctx.progress(85, "Checking that the site answers")
    code = health_check(t, server, site)
    ctx.log(f"http://{site.domain}/ answers {code} on the server")
    if code >= 500 and not site.suspended:
        message = f"The site answers HTTP {code} (its upstream or PHP does not respond)."
        Website.objects.filter(pk=site.pk, status=Website.Status.ACTIVE).update(
            status_message=message
        )
        ctx.log(message, "warning")
    elif site.status == Website.Status.ACTIVE:
        _auto_tls(ctx, site)
    return f"{site.domain}: {site.get_status_display().lower()} ({summary})"


class _Scaled:
    """The context a nested step reports through: its 0-100 % maps into [low, high]."""

    def __init__(self, ctx: OperationContext, low: int, high: int) -> None:
        self._ctx, self._low, self._high = ctx, low, high

    def progress(self, percent: int, message: str | None = None) -> None:
        self._ctx.progress(self._low + (self._high - self._low) * percent // 100, message)

    def __getattr__(self, name: str):
        return getattr(self._ctx, name)


def _auto_tls(ctx: OperationContext, site: Website) -> None:
    """A site that answers gets its certificate in the same operation (the server lock is
    already held, so a queued operation would only wait for this one). A failure to order
    leaves the site active over HTTP: the message is logged and kept on the TLS page."""
    from websites.certificates import services as certificates
    from websites.certificates import tasks as certificate_tasks

    cert, why_not = certificates.prepare_auto_certificate(site, actor=ctx.op.requested_by)
    if why_not:
        ctx.log(why_not, "warning")
    if cert is None:
        return
    try:
        ctx.log(certificate_tasks.issue_certificate(_Scaled(ctx, 88, 99), cert.pk))
    except OperationError as exc:  # recorded on the certificate by the issue step
        ctx.log(f"HTTPS not enabled: {exc}", "warning")


def health_check(t, server: Server, site: Website) -> int:
    """The HTTP status the site answers on the server itself (0: no answer)."""
    listen = profile_for(server).nginx_listen
    addr = listen if ":" in listen else f"127.0.0.1:{listen}"
    argv = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-m",
        "10",
        "-w",
        "%{http_code}",
        "-H",
        f"Host: {site.domain}",
        f"http://{addr}/",
    ]
    try:
        out = t.run(argv, timeout=20).stdout.strip()
    except TransportError:
        return 0
    return int(out) if re.fullmatch(r"\d{3}", out) else 0


def delete_units(site: Website) -> set[str]:
    """What a deletion's apply takes away: the site's vhost and pool (or app program), its
    certificate's key and chain (not rendered for a site being deleted), and the catch-all
    follows (and the apps' runner, with the server's last app)."""
    units = {site.unit, DEFAULT_UNIT}
    if site.is_app:
        units.add(appsites.RUNNER_UNIT)
    cert = Certificate.objects.filter(website=site).only("uuid").first()
    if cert is not None:
        units.add(cert.unit)
    return units


def delete_site(ctx: OperationContext, site_id: int) -> str:
    """Vhost and pool removed by the apply, then the files; the owner's last site on the
    server takes the system account (user, home, SFTP block) with it; then the row."""
    site = Website.objects.select_related("server", "owner").get(pk=site_id)
    server = site.server
    mark_dirty(server, delete_units(site))
    ctx.progress(20, "Removing the site's configuration")
    _summary, result = run_apply(ctx, server)
    if result is not None and site.unit in result.failed_units:
        raise OperationError(f"{site.domain}: {result.failed_units[site.unit]}")
    t = _connect(ctx, server)
    account = SystemAccount.objects.filter(server=server, user=site.owner).first()
    name = account.name if account else site.owner.account_name
    try:
        ctx.progress(60, "Removing the site's files")
        sysaccounts.remove_site(t, server, name, site.domain)
        others = Website.objects.filter(server=server, owner=site.owner).exclude(pk=site.pk)
        if not others.exists():
            if account is not None:
                unit = account.unit
                account.delete()
                mark_dirty(server, {unit})
                ctx.progress(75, "Removing the SFTP access")
                run_apply(ctx, server)
            ctx.progress(85, f"Removing the system account {name}")
            sysaccounts.remove(t, server, name)
    except (AccountError, TransportError) as exc:
        raise OperationError(str(exc)) from exc
    with transaction.atomic():
        Website.objects.filter(pk=site.pk).delete()
    return f"{site.domain} deleted"


def _manager_argv(server: Server, action: str, name: str) -> list[str]:
    from websites.appservices import supervisorctl

    profile = profile_for(server)
    if appsites.manager_of(server, profile) == "systemd":
        return ["systemctl", action, f"{name}.service"]
    return [*supervisorctl(profile), action, name]


def read_app_states(t, server: Server, sites: list[Website]) -> dict[int, str]:
    """What the process manager says of each app: running, starting, crashed, stopped ...
    ("not installed" when it does not know the program)."""
    from websites.appservices import supervisorctl

    profile = profile_for(server)
    names = {site.program_name: site.pk for site in sites}
    states: dict[int, str] = dict.fromkeys(names.values(), "not installed")
    if not names:
        return states
    if appsites.manager_of(server, profile) == "systemd":
        for name, pk in names.items():
            argv = ["systemctl", "show", "-p", "LoadState", "-p", "ActiveState", "-p", "SubState"]
            out = t.run([*argv, f"{name}.service"], timeout=30).stdout
            found = dict(re.findall(r"^(\w+)=(\S*)$", out, re.M))
            if found.get("LoadState") == "loaded":
                sub = found.get("SubState", "")
                raw = sub if sub == "auto-restart" else found.get("ActiveState", "")
                states[pk] = appsites.process_state(raw)
        return states
    res = t.run([*supervisorctl(profile), "status", *sorted(names)], timeout=30)
    text = res.stdout + res.stderr
    if "no such file" in text or "refused connection" in text:
        raise OperationError(f"supervisord does not answer: {text.strip()[:500]}")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in names and "no such process" not in line:
            states[names[parts[0]]] = appsites.process_state(parts[1])
    return states


def refresh_app_states() -> int:
    """Scheduled (django-q2, every 5 minutes): what each server's process manager says of its
    app sites, stored on the sites, so a page shows an app that crashed since the last
    operation as crashed. A server that does not answer is skipped (its sites keep the state
    read last, with its time). Returns how many sites were read."""
    read = 0
    apps = (
        Website.objects.filter(kind__in=appsites.APP_KINDS, suspended=False)
        .exclude(status=Website.Status.DELETING)
        .select_related("server")
        .order_by("server_id")
    )
    by_server: dict[int, list[Website]] = {}
    for site in apps:
        by_server.setdefault(site.server_id, []).append(site)
    now = timezone.now()
    for sites in by_server.values():
        server = sites[0].server
        try:
            states = read_app_states(connection.open_transport(server), server, sites)
        except (OperationError, TransportError):
            continue
        for site in sites:
            Website.objects.filter(pk=site.pk).update(app_state=states[site.pk], app_state_at=now)
            read += 1
    return read


def store_app_state(t, server: Server, site: Website) -> str:
    try:
        state = read_app_states(t, server, [site])[site.pk]
    except (OperationError, TransportError):
        state = "unknown"
    Website.objects.filter(pk=site.pk).update(app_state=state, app_state_at=timezone.now())
    return state


def app_action(ctx: OperationContext, site_id: int, action: str) -> str:
    """start/stop: the program is written again if that changed (autostart), then told;
    restart: restarted and waited for, like an apply; status: read."""
    from websites.appservices import VERIFY_SCRIPT, supervisorctl

    site = Website.objects.select_related("server", "owner").get(pk=site_id)
    server = site.server
    if action in ("start", "stop"):
        ctx.progress(20, "Writing the app's program")
        _summary, result = run_apply(ctx, server)
        if result is not None and site.unit in result.failed_units:
            t = _connect(ctx, server)
            store_app_state(t, server, site)
            raise OperationError(f"{site.domain}: {result.failed_units[site.unit]}")
    t = _connect(ctx, server)
    if action != "status":
        ctx.progress(50, f"{action.capitalize()}ing the app")
        res = t.run(_manager_argv(server, action, site.program_name), timeout=120)
        words = (res.stdout + res.stderr).strip()
        ctx.log(words[:2000] or f"{action}: done")
        if action != "stop":
            profile = profile_for(server)
            account = site.owner.account_name
            log = appsites.app_paths(site, profile, account)["log"]
            manager = appsites.manager_of(server, profile)
            argv = ["sh", "-c", VERIFY_SCRIPT, "app-verify", manager]
            argv.append(str(profile.app_start_timeout))
            if manager == "supervisord":
                argv += supervisorctl(profile)
            line = f"{site.program_name} {site.app_port} run {log}\n"
            check = t.run(argv, timeout=profile.app_start_timeout + 60, stdin=line.encode())
            if not check.ok:
                words = (check.stdout + check.stderr)[:2000]
                if "crashed (" in words:  # supervisord may be between two retries (STARTING)
                    state = "crashed"
                    Website.objects.filter(pk=site.pk).update(
                        app_state=state, app_state_at=timezone.now()
                    )
                else:
                    state = store_app_state(t, server, site)
                raise OperationError(f"{site.domain}: the app is {state}: {words}")
    state = store_app_state(t, server, site)
    return f"{site.domain}: the app is {state}"


def _app_worker_lost(op, site_id: int, action: str = "", **_args) -> None:
    """The worker died during an app action: whether the program was rewritten or the
    process manager got the command is unknown. The app's state reads "unknown"; for a
    start, stop or restart the site says failed and why (never pending, never silently
    active) and its units are marked for the next apply: the next start or stop applies
    them (the site is active again once they apply) and tells the process manager."""
    now = timezone.now()
    Website.objects.filter(pk=site_id).update(app_state="unknown", app_state_at=now)
    if action == "status":
        return
    site = Website.objects.filter(pk=site_id).select_related("server").first()
    if site is None or site.status == Website.Status.DELETING:
        return
    _fail_site(
        site,
        f"The app's {action} was interrupted ({WORKER_LOST}) Its state is unknown: "
        "start (or stop) it again, which applies the site and tells the process manager.",
    )
    mark_dirty(site.server, {site.unit, appsites.RUNNER_UNIT})


on_worker_lost(app_action, _app_worker_lost)


def _account_task(account_id: int):
    account = SystemAccount.objects.select_related("server", "user").get(pk=account_id)
    return account, account.server


def set_sftp_password(ctx: OperationContext, account_id: int, password: str) -> str:
    from core.crypto import decrypt

    account, server = _account_task(account_id)
    t = _connect(ctx, server)
    try:
        sysaccounts.ensure(t, server, account.name)
        sysaccounts.set_password(t, server, account.name, decrypt(password))
    except (AccountError, TransportError) as exc:
        raise OperationError(str(exc)) from exc
    SystemAccount.objects.filter(pk=account.pk).update(password_set_at=timezone.now())
    return f"Password of {account.name} set"


def push_ssh_key(ctx: OperationContext, account_id: int) -> str:
    account, server = _account_task(account_id)
    t = _connect(ctx, server)
    try:
        sysaccounts.ensure(t, server, account.name)
        sysaccounts.set_key(t, server, account.name, account.ssh_key)
    except (AccountError, TransportError) as exc:
        raise OperationError(str(exc)) from exc
    return f"SSH key of {account.name} {'set' if account.ssh_key else 'removed'}"


def measure_disk() -> int:
    """Scheduled (django-q2): ``du`` of every system account's home, stored on the account
    (shown against the plan's disk). Returns how many were measured."""
    measured = 0
    for server in Server.objects.filter(system_accounts__isnull=False).distinct():
        try:
            t = connection.open_transport(server)
        except TransportError:
            continue
        for account in SystemAccount.objects.filter(server=server):
            try:
                used = sysaccounts.disk_used_mb(t, server, account.name)
            except (AccountError, TransportError):
                continue
            SystemAccount.objects.filter(pk=account.pk).update(
                disk_used_mb=used, disk_measured_at=timezone.now()
            )
            measured += 1
    from websites.quota import enforce_quotas

    enforce_quotas()  # over the disk quota: suspend where the plan says so (or lift it)
    return measured


def read_logs(ctx: OperationContext, site_id: int, lines: int = 50) -> str:
    site = Website.objects.select_related("server", "owner").get(pk=site_id)
    account = SystemAccount.objects.filter(server=site.server, user=site.owner).first()
    if account is None:
        raise OperationError("The site has no system account on its server yet.")
    t = _connect(ctx, site.server)
    try:
        logs = sysaccounts.tail_logs(t, site.server, account.name, site.domain, lines)
    except (AccountError, TransportError) as exc:
        raise OperationError(str(exc)) from exc
    for kind in ("access", "error"):
        ctx.log(f"--- {kind} log ({len(logs[kind])} lines) ---")
        for line in logs[kind]:
            ctx.log(line[:2000], "warning" if kind == "error" else "info")
    return f"{len(logs['access'])} access and {len(logs['error'])} error lines"


# "Follow": the logs' new lines while the site's page is open, for at most this long.
FOLLOW_SECONDS = 600
FOLLOW_MAX_LINES = 5000
# tail -F both logs, bounded by ``timeout`` on the server too; a watcher on stdin (kept as
# fd 3: a background job's stdin would be /dev/null) stops tail as soon as the panel closes
# the session (the page left, the operation cancelled). Constant text; paths as arguments.
FOLLOW_SCRIPT = """
exec 3<&0
timeout "$1" tail -n 50 -F -- "$2" "$3" 2>&1 &
pid=$!
{ cat <&3 >/dev/null; kill "$pid"; } >/dev/null 2>&1 &
wait "$pid"
"""


def follow_logs(ctx: OperationContext, site_id: int, seconds: int = FOLLOW_SECONDS) -> str:
    """The last 50 lines of the site's access and error logs, then every new line as it is
    written, each an operation log line (pushed to open pages over the live-event path),
    until the page cancels the operation or ``seconds`` pass."""
    import time

    from websites.sysaccounts import home_of

    site = Website.objects.select_related("server", "owner").get(pk=site_id)
    account = SystemAccount.objects.filter(server=site.server, user=site.owner).first()
    if account is None:
        raise OperationError("The site has no system account on its server yet.")
    seconds = max(1, min(int(seconds), FOLLOW_SECONDS))
    logs = f"{home_of(site.server, account.name)}/logs/{site.domain}"
    paths = {f"{logs}.access.log": "info", f"{logs}.error.log": "warning"}
    t = _connect(ctx, site.server)
    state = {"level": "info", "lines": 0, "asked": 0.0}

    def on_line(line: str) -> None:
        header = re.fullmatch(r"==> (.*) <==", line)
        if header:
            state["level"] = paths.get(header.group(1), "info")
            return
        if line and state["lines"] < FOLLOW_MAX_LINES:
            state["lines"] += 1
            ctx.log(line[:2000], state["level"])

    def should_stop() -> bool:
        if state["lines"] >= FOLLOW_MAX_LINES:
            return True
        if time.monotonic() - state["asked"] >= 1:
            state["asked"] = time.monotonic()
            ctx.check_cancelled()  # the page closed: ends the operation as cancelled
        return False

    ctx.progress(10, f"Following the logs of {site.domain} for up to {seconds // 60 or 1} min")
    argv = ["sh", "-c", FOLLOW_SCRIPT, "panel-follow", str(seconds), *paths]
    try:
        t.stream_lines(argv, timeout=seconds + 5, on_line=on_line, should_stop=should_stop)
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    return f"Followed the logs of {site.domain}: {state['lines']} lines"
