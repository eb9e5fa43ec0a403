""" "Prepare server": make a Debian or Ubuntu server ready to host sites, over its transport.

Reads the OS from the facts, asks dpkg which of nginx and the PHP-FPM versions asked for are
installed (``dpkg-query``; installed means nothing is done for it), installs the others with
apt (argv only, names validated, one ``apt-get update`` when a package is unknown), writes
the one include line the apply engine needs (``include <panel.d>/*.conf;`` through nginx's
``conf.d``, unless ``nginx.conf`` has it already), moves Debian's stock default site out of
the way (the panel writes its own catch-all ``default_server``), checks the result with
``nginx -t``, records what is installed on the server (``Server.components``), starts
nginx, PHP-FPM and fail2ban where they do not run (systemd, or their own commands without
it) and applies fail2ban's jails through the apply engine.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils import timezone

from core.operations import OperationContext, OperationError
from servers import facts as server_facts
from servers.engine import fill, profile_for
from servers.engine.state import mark_dirty
from servers.fail2ban import UNIT as FAIL2BAN_UNIT
from servers.models import Server
from servers.transport import Transport, TransportError

SUPPORTED = {"debian", "ubuntu"}
PHP_VERSION = re.compile(r"[5-9]\.[0-9]{1,2}")
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,62}")
APT_ENV = ["env", "DEBIAN_FRONTEND=noninteractive"]
APT_LOCK = ["-o", "DPkg::Lock::Timeout=120"]
INCLUDE_FILE = "hosting-panel.conf"
APT_LISTS = "/var/lib/apt/lists"
FRESH_MINUTES = 360  # package lists younger than this are not refreshed for an unknown name


def clean_php_versions(values) -> list[str]:
    """The PHP versions asked for, validated whole; ValidationError names a bad one."""
    if values is None:
        return []
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    if not isinstance(values, list | tuple) or len(values) > 8:
        raise ValidationError({"php_versions": "Give at most 8 PHP versions, like 8.2."})
    out = []
    for value in values:
        if not isinstance(value, str) or not PHP_VERSION.fullmatch(value):
            raise ValidationError({"php_versions": f"{value!r} is not a PHP version like 8.2."})
        if value not in out:
            out.append(value)
    return out


def packages_for(php_versions: list[str], *, supervisor: bool = False) -> dict[str, str]:
    """component -> Debian package. ``supervisor``: the server has no systemd, so its app
    sites (Node.js, Python) run under supervisord."""
    wanted = {"nginx": "nginx", "fail2ban": "fail2ban"}
    if supervisor:
        wanted["supervisor"] = "supervisor"
    wanted.update({f"php{v}": f"php{v}-fpm" for v in php_versions})
    for package in wanted.values():
        if not PACKAGE.fullmatch(package):  # built from validated parts; belt and braces
            raise ValidationError(f"{package!r} is not a package name.")
    return wanted


def installed_versions(t: Transport, packages: list[str]) -> dict[str, str]:
    """package -> version for those dpkg says are installed ("install ok installed")."""
    res = t.run(["dpkg-query", "-W", "-f=${Package}\t${Status}\t${Version}\n", *packages])
    found = {}
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] == "install ok installed" and parts[2]:
            found[parts[0]] = parts[2]
    return found


def _known_to_apt(t: Transport, package: str) -> bool:
    return t.run(["apt-cache", "show", "--no-all-versions", "--", package], timeout=120).ok


def install(ctx: OperationContext, t: Transport, missing: list[str]) -> None:
    unknown = [p for p in missing if not _known_to_apt(t, p)]
    if unknown:
        fresh = t.run(["find", APT_LISTS, "-maxdepth", "0", "-mmin", f"-{FRESH_MINUTES}"])
        if fresh.ok and fresh.stdout.strip():
            ctx.log(f"The package lists are under {FRESH_MINUTES // 60} hours old: not updated")
        else:
            ctx.log(f"apt does not know {', '.join(unknown)}: updating the package lists")
            res = t.run([*APT_ENV, "apt-get", *APT_LOCK, "update", "-q"], timeout=600)
            if not res.ok:
                raise OperationError(f"apt-get update failed: {_tail(res.stderr or res.stdout)}")
            unknown = [p for p in unknown if not _known_to_apt(t, p)]
    if unknown:
        raise OperationError(
            f"{', '.join(unknown)} cannot be installed: no such package in this server's "
            "package sources (for other PHP versions, add a repository that has them)."
        )
    argv = [*APT_ENV, "apt-get", *APT_LOCK, "install", "-y", "-q", "--no-install-recommends"]
    res = t.run([*argv, "--", *missing], timeout=1800)
    if not res.ok:
        raise OperationError(f"apt-get install failed: {_tail(res.stderr or res.stdout)}")


def finish_interrupted_dpkg(ctx: OperationContext, t: Transport, profile) -> None:
    """``dpkg --audit`` lists what an interrupted install left half done (unpacked, not
    configured); apt refuses to install anything until ``dpkg --configure -a`` ran, so it
    runs first, through the transport, and the log says so."""
    dpkg = [str(word) for word in profile.dpkg]
    audit = t.run([*dpkg, "--audit"], timeout=120)
    report = (audit.stdout + audit.stderr).strip()
    if not report:
        if not audit.ok:
            raise OperationError(f"dpkg --audit failed with exit code {audit.code}")
        return
    ctx.log(f"dpkg reports an interrupted install: {_tail(report)}", "warning")
    ctx.log("Running dpkg --configure -a before anything else")
    res = t.run([*APT_ENV, *dpkg, "--configure", "-a"], timeout=1800)
    if not res.ok:
        raise OperationError(f"dpkg --configure -a failed: {_tail(res.stderr or res.stdout)}")
    ctx.log(f"dpkg --configure -a finished: {_tail(res.stdout) or 'nothing to say'}")
    again = t.run([*dpkg, "--audit"], timeout=120)
    left = (again.stdout + again.stderr).strip()
    if left:
        raise OperationError(f"dpkg still reports after dpkg --configure -a: {_tail(left)}")


def _tail(text: str, lines: int = 6) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])[:1500]


def write_includes(ctx: OperationContext, t: Transport, profile) -> None:
    """nginx must include the panel's vhost directory inside ``http {}``: through
    ``conf.d/*.conf`` (Debian's nginx.conf includes it there) unless it does already."""
    sites_dir = profile.nginx_sites_dir.rstrip("/")
    t.makedirs(sites_dir)
    line = f"include {sites_dir}/*.conf;"
    main = (t.read_file(profile.nginx_conf) or b"").decode(errors="replace")
    if line in main:
        ctx.log(f"{profile.nginx_conf} includes {sites_dir} already")
    else:
        conf_d = profile.nginx_conf_d.rstrip("/")
        if f"include {conf_d}/*.conf;" not in main:
            raise OperationError(
                f"{profile.nginx_conf} includes neither {sites_dir}/*.conf nor {conf_d}/*.conf: "
                f"add '{line}' inside its http block."
            )
        target = f"{conf_d}/{INCLUDE_FILE}"
        body = f"# Written by the hosting panel's Prepare server.\n{line}\n".encode()
        if t.read_file(target) != body:
            t.write_file(target, body)
            ctx.log(f"Wrote {target}")
    stock_site = profile.nginx_stock_site
    stock = t.run(["readlink", "--", stock_site])
    if stock.ok and stock.stdout.strip().endswith("sites-available/default"):
        t.remove(stock_site)  # its default_server would clash with the panel's
        ctx.log(f"Disabled Debian's default site ({stock_site})")
    for key in ("state_dir", "acme_challenge_dir", "tls_dir"):
        path = getattr(profile, key, "")
        if path:
            t.makedirs(path, 0o755 if key != "tls_dir" else 0o700)


# Is the daemon whose pid file is $1 alive? A zombie (PID 1 may not reap on such hosts)
# is not: its state letter in /proc/PID/stat is Z. Constant text; the path is an argument.
RUNNING_SCRIPT = """
pid=$(cat -- "$1" 2>/dev/null) || exit 1
case "$pid" in ''|*[!0-9]*) exit 1;; esac
state=$(sed -n 's/^[0-9]* (.*) \\([A-Z]\\) .*/\\1/p' "/proc/$pid/stat" 2>/dev/null)
[ -n "$state" ] && [ "$state" != Z ]
"""
START_WAIT_SECONDS = 15


def _daemons(
    profile, php_versions: list[str], supervisor: bool = False
) -> list[tuple[str, list[str], list[str], str]]:
    """(name, argv that succeeds while it runs, argv that starts it, directory it needs)."""
    daemons = [
        (
            "nginx",
            ["sh", "-c", RUNNING_SCRIPT, "running", profile.nginx_pid_file],
            fill(profile.nginx_start, conf=profile.nginx_conf),
            profile.nginx_pid_file.rsplit("/", 1)[0],
        )
    ]
    for v in php_versions:
        pid_file = profile.php_pid_file.replace("{php}", v)
        conf = profile.php_conf.replace("{php}", v)
        daemons.append(
            (
                f"php-fpm{v}",
                ["sh", "-c", RUNNING_SCRIPT, "running", pid_file],
                fill(profile.php_start, php=v, conf=conf),
                pid_file.rsplit("/", 1)[0],
            )
        )
    socket = profile.fail2ban_socket
    daemons.append(
        (
            "fail2ban",
            ["fail2ban-client", "-s", socket, "ping"],
            fill(profile.fail2ban_start, conf=profile.fail2ban_conf_dir.rstrip("/"), socket=socket),
            socket.rsplit("/", 1)[0],
        )
    )
    if supervisor:  # the app sites' process manager (websites/appservices.py)
        daemons.append(
            (
                "supervisord",
                [*fill(profile.supervisorctl, conf=profile.supervisor_conf), "pid"],
                fill(profile.supervisor_start, conf=profile.supervisor_conf),
                "",
            )
        )
    return daemons


def start_daemons(
    ctx: OperationContext,
    t: Transport,
    profile,
    php_versions: list[str],
    *,
    supervisor: bool = False,
) -> None:
    """nginx, the PHP-FPM versions and fail2ban running: with systemd through it (starting a
    running unit does nothing); without, each by its own command when it is not running
    already. A daemon that does not come up fails the operation with its own words."""
    import time

    if t.run(["test", "-d", "/run/systemd/system"]).ok:
        units = ["nginx", *(f"php{v}-fpm" for v in php_versions), "fail2ban"]
        res = t.run(["systemctl", "start", *units], timeout=300)
        if not res.ok:
            raise OperationError(f"systemctl start failed: {_tail(res.stderr or res.stdout)}")
        ctx.log(f"systemd runs {', '.join(units)}")
        return
    for name, running, start, run_dir in _daemons(profile, php_versions, supervisor):
        if t.run(running, timeout=30).ok:
            ctx.log(f"{name} runs already")
            continue
        if run_dir:
            t.makedirs(run_dir)
        res = t.run(start, timeout=120)
        if not res.ok:
            raise OperationError(f"{name} does not start: {_tail(res.stderr or res.stdout)}")
        end = time.monotonic() + START_WAIT_SECONDS  # daemons write their pid file late
        while not t.run(running, timeout=30).ok:
            if time.monotonic() > end:
                raise OperationError(
                    f"{name} was started but does not run: {_tail(res.stderr or res.stdout)}"
                )
            time.sleep(0.2)
        ctx.log(f"Started {name} (no systemd here)")


def prepare_server(ctx: OperationContext, server_id: int, php_versions: list[str]) -> str:
    server = Server.objects.get(pk=server_id)
    from servers.tasks import _connect

    t = _connect(ctx, server)
    profile = profile_for(server)
    try:
        ctx.progress(15, "Reading the operating system")
        found = server_facts.gather(t)
        distro = found.get("distribution", "unknown")
        if distro not in SUPPORTED:
            raise OperationError(
                f"{found.get('pretty_name') or distro} is not supported: Prepare server knows "
                "Debian and Ubuntu (apt and dpkg)."
            )
        ctx.progress(20, "Asking dpkg whether an earlier install was interrupted")
        finish_interrupted_dpkg(ctx, t, profile)
        # Without systemd, app sites run under supervisord: it is installed and started too.
        supervisor = not found.get("systemd_running")
        wanted = packages_for(php_versions, supervisor=supervisor)
        ctx.progress(25, f"Checking {', '.join(wanted.values())} with dpkg")
        have = installed_versions(t, list(wanted.values()))
        missing = [p for p in wanted.values() if p not in have]
        if missing:
            ctx.progress(35, f"Installing {', '.join(missing)}")
            install(ctx, t, missing)
            have = installed_versions(t, list(wanted.values()))
            still = [p for p in wanted.values() if p not in have]
            if still:
                raise OperationError(f"{', '.join(still)} still not installed after apt-get")
        else:
            ctx.log("Everything asked for is installed already: nothing to install")
        ctx.progress(70, "Writing nginx's include line")
        write_includes(ctx, t, profile)
        ctx.progress(85, "Testing nginx's configuration")
        res = t.run(fill(profile.nginx_test, conf=profile.nginx_conf), timeout=60)
        if not res.ok:
            raise OperationError(f"nginx -t fails: {_tail(res.stderr or res.stdout)}")
        found = server_facts.gather(t)  # the PHP versions now installed
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    components = {
        "os": f"{distro} {found.get('version', '')}".strip(),
        "packages": {p: have[p] for p in sorted(have)},
        "nginx": have.get("nginx", ""),
        "php": sorted(v for v in php_versions if f"php{v}-fpm" in have),
        "prepared_at": timezone.now().isoformat(timespec="seconds"),
    }
    Server.objects.filter(pk=server.pk).update(
        components=components, facts=found, facts_at=timezone.now()
    )
    try:
        ctx.progress(88, "Starting nginx, PHP-FPM and fail2ban where they do not run")
        start_daemons(ctx, t, profile, components["php"], supervisor=supervisor)
    except TransportError as exc:
        raise OperationError(str(exc)) from exc
    # fail2ban's jails are the apply engine's (servers/fail2ban.py): written, validated
    # (fail2ban-client -t), loaded and checked now that the server counts as prepared.
    ctx.progress(94, "Applying fail2ban's jails")
    mark_dirty(server, {FAIL2BAN_UNIT})
    from servers.tasks import run_apply

    server.refresh_from_db()
    _summary, result = run_apply(ctx, server)
    if result is not None and FAIL2BAN_UNIT in result.failed_units:
        raise OperationError(f"fail2ban's jails: {result.failed_units[FAIL2BAN_UNIT]}")
    done = ", ".join(f"{p} {v}" for p, v in sorted(have.items()))
    return f"Prepared: {done}" + ("" if missing else " (nothing installed)")
