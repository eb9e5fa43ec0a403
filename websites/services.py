"""State changes of websites. Each writes the row and its audit entry in one transaction and
starts the apply that brings the site's vhost to its server.

The field lists here are the only place that says what a caller may write: the admin and the
API take theirs from them. Raw nginx directives and the "administrator's proxy" flag are for
administrators alone; a site's owner changes its typed options.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from core import audit
from core.operations import start_operation
from core.policy import ADMIN, CHANGE, CUSTOMER, RESELLER, SUPPORT, is_staff, role_of
from core.services import accept_only, refuse_nul_in
from servers.engine.state import mark_dirty
from servers.models import Server
from servers.services import start_apply
from websites import appsites, names, plans
from websites.checks import own_addresses
from websites.default_server import UNIT as DEFAULT_UNIT
from websites.models import APP_KINDS, SystemAccount, Website
from websites.options import parse_options, with_password_hashes, without_hashes
from websites.validators import parse_upstream_url, upstream_host_problem

OWNER_FIELDS = ["aliases", "options", "php_version", "upstream", "start_command", "app_env"]
CREATE_FIELDS = [
    "domain",
    "aliases",
    "server",
    "owner",
    "kind",
    "php_version",
    "upstream",
    "start_command",
    "app_env",
    "options",
]
# Audited by the names of the variables only: the values are secrets.
AUDITED_FIELDS = [f for f in OWNER_FIELDS if f != "app_env"]
ADMIN_FIELDS = ["custom_directives", "admin_proxy"]
WEBSITE_FIELDS = [*OWNER_FIELDS, *ADMIN_FIELDS]
APP_ACTIONS = ("start", "stop", "restart", "status")
ADMIN_ONLY = {
    "custom_directives": "Only administrators may set raw nginx directives; use the options.",
    "admin_proxy": "Only administrators may mark a site as their proxy.",
}


def may_write_raw_directives(user) -> bool:
    """The one rule for raw directives: administrators (forms and serializers ask this)."""
    return user is None or role_of(user) == ADMIN


def writable_fields(user) -> list[str]:
    return WEBSITE_FIELDS if may_write_raw_directives(user) else OWNER_FIELDS


def do_update_website(site: Website, *, actor, data: dict) -> Website:
    """Change a site's options (its owner) or raw directives (administrators), then apply
    the site's unit on its server."""
    accept_only(data, WEBSITE_FIELDS)
    # From the database: a bound ModelForm has already written new values onto ``site``.
    stored = Website.objects.select_related("server").get(pk=site.pk)
    if not may_write_raw_directives(actor):
        refused = {
            name: why
            for name, why in ADMIN_ONLY.items()
            if name in data and data[name] != getattr(stored, name)
        }
        if refused:
            raise ValidationError(refused)
    data = dict(data)
    if "aliases" in data:
        data["aliases"] = _aliases(stored.domain, data["aliases"])
    if isinstance(data.get("custom_directives"), str):
        data["custom_directives"] = data["custom_directives"].replace("\r\n", "\n")
    env_before = _env_of(stored)
    if "app_env" in data:
        refuse_nul_in(data, ["app_env"])
        env = _field("app_env", appsites.merge_env, env_before, data["app_env"])
        data["app_env"] = _env_json(env)
    if "start_command" in data:
        data["start_command"] = start_command_of(data["start_command"], stored.kind)
    if "options" in data:
        data["options"] = _field("options", with_password_hashes, data["options"], stored.options)
    before = _audited(stored)
    site = stored
    for name, value in data.items():
        setattr(site, name, value)
    refuse_nul_in(site, [f for f in WEBSITE_FIELDS if f != "app_env"])
    site.full_clean()
    # Stored in one spelling: only the options that differ from their defaults.
    site.options = parse_options(
        site.options, names=tuple(site.names), own_addresses=own_addresses(site.server)
    ).to_json()
    after = _audited(site)
    changes = audit.diff(before, after)
    env_after = _env_of(site)
    if env_after != env_before:
        changes["app_env"] = [sorted(env_before), sorted(env_after)]  # names, never values
    if not changes:
        return site
    if {"php_version", "upstream", "start_command", "app_env"} & set(changes):
        check_kind(site, actor)
        plans.check_allowed(site.owner, php_version=site.php_version or None)
    site.status = Website.Status.PENDING  # until the apply reports on it
    with transaction.atomic():
        site.save(update_fields=[*WEBSITE_FIELDS, "status"])
        audit.record("website.update", site, actor=actor, changes=changes)
        start_apply(site.server, actor=actor, units=_units_of(site))
        if "aliases" in changes:
            from websites.certificates.services import reissue_for_new_names

            reissue_for_new_names(site, actor=actor)
    return site


def _audited(site: Website) -> dict:
    """The audited fields; basic-auth users' password hashes only as short digests."""
    values = audit.snapshot(site, [*AUDITED_FIELDS, *ADMIN_FIELDS])
    values["options"] = audit.jsonable(without_hashes(site.options, mark=True))
    return values


def reapply_php_pools(user_ids, *, actor) -> int:
    """The owners' plan limits for PHP (or apps' memory) changed: apply their PHP and app
    sites' units again (one apply per server; an app restarts with its new limit). Returns
    how many applies were started."""
    sites = (
        Website.objects.filter(owner_id__in=list(user_ids), kind__in=[Website.Kind.PHP, *APP_KINDS])
        .exclude(status=Website.Status.DELETING)
        .select_related("server")
    )
    by_server: dict[int, tuple[Server, set[str]]] = {}
    for site in sites:
        by_server.setdefault(site.server_id, (site.server, set()))[1].add(site.unit)
    for server, units in by_server.values():
        start_apply(server, actor=actor, units=units)
    return len(by_server)


def _field(name: str, check, *args):
    """A check's ValidationError as an error of field ``name``."""
    try:
        return check(*args)
    except ValidationError as exc:
        raise ValidationError({name: exc.messages}) from exc


def _env_of(site: Website) -> dict[str, str]:
    try:
        return site.env_vars()
    except ValidationError:
        return {}


def _env_json(env: dict[str, str]) -> str:
    import json

    return json.dumps(env, sort_keys=True, ensure_ascii=False) if env else ""


def start_command_of(value, kind: str) -> str:
    """The start command as stored (normalised), or a field error."""
    if kind not in APP_KINDS:
        return value if isinstance(value, str) else ""
    return _field("start_command", appsites.validate_start_command, value)


def _units_of(site: Website) -> set[str]:
    """The units a change of ``site`` applies: its own, the catch-all, for app sites the
    runner their programs start through, and on a mail server the mail maps (the envelope
    senders its Linux user may use with sendmail, mail/apply.py)."""
    units = {site.unit, DEFAULT_UNIT}
    if site.is_app:
        units.add(appsites.RUNNER_UNIT)
    return units | _mail_units(site)


def _mail_units(site: Website) -> set[str]:
    """On a mail server, the mail maps: they list the envelope senders each site's Linux
    user may use with sendmail (local_senders, mail/apply.py)."""
    from mail import config as mail_config
    from mail.models import MAPS_UNIT

    return {MAPS_UNIT} if mail_config.configured(site.server) else set()


# --- the lifecycle: create, suspend, unsuspend, delete ------------------------------------


def hosting_servers(user):
    """Servers ``user`` may put sites on: administrators any; others their own and their
    provider's (the reseller's, or the administrators' for direct customers)."""
    role = role_of(user)
    if role == ADMIN:
        return Server.objects.all()
    if role not in (RESELLER, CUSTOMER):
        return Server.objects.none()
    q = Q(owner=user)
    if role == CUSTOMER and user.reseller_id:
        q |= Q(owner_id=user.reseller_id)
    else:
        q |= Q(owner__role=ADMIN)
    return Server.objects.filter(q).exclude(transport=Server.Transport.LOCAL)


def installed_php(server) -> list[str]:
    return sorted((server.facts or {}).get("php_versions") or [])


def check_kind(site: Website, actor) -> None:
    """The fields each kind needs, and nothing the others need; and a server that has
    what the site needs (its facts say so)."""
    errors = {}
    if ((site.server.facts or {}).get("services") or {}).get("nginx") is False:
        errors["server"] = (
            f"nginx is not installed on {site.server.name}: prepare the server first "
            "(server page, Prepare server)."
        )
    if site.kind == Website.Kind.PHP:
        versions = installed_php(site.server)
        if not site.php_version:
            errors["php_version"] = "Choose a PHP version."
        elif site.php_version not in versions:
            errors["php_version"] = (
                f"PHP {site.php_version} is not installed on {site.server.name} "
                f"(installed: {', '.join(versions) or 'none'}); Prepare server can install it."
            )
    elif site.php_version:
        errors["php_version"] = "Only PHP sites have a PHP version."
    if site.kind == Website.Kind.PROXY:
        problem = upstream_problem(site.upstream, site.server, staff=is_staff(actor))
        if problem:
            errors["upstream"] = problem
        elif any(p.get("path") == "/" for p in (site.options or {}).get("proxies", [])):
            errors["options"] = "A reverse proxy site passes / to its upstream already."
    elif site.upstream:
        errors["upstream"] = "Only reverse proxy sites have an upstream."
    if site.is_app:
        if not site.start_command:
            errors["start_command"] = "Give the command that starts the app, e.g. node server.js."
        services_found = (site.server.facts or {}).get("services") or {}
        if services_found.get("supervisord") is False and not (site.server.facts or {}).get(
            "systemd_running"
        ):
            errors["kind"] = (
                f"{site.server.name} has neither supervisord nor systemd to run apps: "
                "prepare the server first (it installs supervisor)."
            )
        elif site.options and any(
            p.get("path") == "/" for p in (site.options or {}).get("proxies", [])
        ):
            errors["options"] = "An app site passes / to its app already."
    else:
        if site.start_command:
            errors["start_command"] = "Only Node.js and Python app sites have a start command."
        if site.app_env:
            errors["app_env"] = "Only Node.js and Python app sites have environment variables."
    if errors:
        raise ValidationError(errors)


def upstream_problem(value: str, server, *, staff: bool) -> str:
    """Why ``value`` cannot be a site's upstream ("" when it can). Customers give public IP
    addresses; staff may also give host names (resolved by nginx when a request comes) and
    private or loopback addresses."""
    if not value:
        return "Give the upstream URL, e.g. http://203.0.113.7:8080."
    try:
        _scheme, host, _port, path = parse_upstream_url(value)
    except ValidationError as exc:
        return " ".join(exc.messages)
    if path not in ("", "/"):
        return "The upstream is scheme://host[:port], without a path."
    if staff:
        return (
            upstream_host_problem(host, hostnames=True, refused=frozenset())
            if not (_is_ip(host))
            else ""
        )
    problem = upstream_host_problem(host, hostnames=False, refused=own_addresses(server))
    return f"{problem}: upstreams are public IP addresses." if problem else ""


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _owner_for(actor, owner):
    """Whom the site is for: the actor, or (administrators, resellers) a user they reach."""
    if owner is None or owner == actor:
        return actor
    role = role_of(actor)
    if role == ADMIN or (role == RESELLER and owner.reseller_id == actor.pk):
        return owner
    raise ValidationError({"owner": "You cannot create sites for this user."})


def _start(site: Website, kind: str, task: str, *, actor, units: set[str]):
    # The catch-all follows the sites, and so do the mail maps.
    mark_dirty(site.server, {*units, DEFAULT_UNIT, *_mail_units(site)})
    return start_operation(
        kind=kind,
        task=task,
        owner=site.owner,
        requested_by=actor,
        target=site,
        target_action=CHANGE,
        lock_key=site.server.lock_key,
        args={"site_id": site.pk},
    )


def account_for(site: Website) -> SystemAccount:
    account, _ = SystemAccount.objects.get_or_create(
        server=site.server, user=site.owner, defaults={"name": site.owner.account_name}
    )
    return account


def _domain(value) -> str:
    if not isinstance(value, str):
        raise ValidationError({"domain": "Enter a domain name."})
    try:
        return names.to_ascii(value)
    except ValidationError as exc:
        raise ValidationError({"domain": exc.messages}) from exc


def _aliases(domain: str, value) -> str:
    if value is not None and not isinstance(value, (str, list)):
        raise ValidationError({"aliases": "Give names separated by spaces."})
    try:
        return names.normalize_aliases(domain, value)
    except ValidationError as exc:
        raise ValidationError({"aliases": exc.messages}) from exc


def do_create_website(*, actor, data: dict) -> Website:
    """A new site (pending), its owner's system account on the server, and the Operation
    that brings both to the server (``site.operation``)."""
    accept_only(data, CREATE_FIELDS)
    refuse_nul_in(data, CREATE_FIELDS)
    if role_of(actor) == SUPPORT:
        raise ValidationError("Support staff do not create sites.")
    owner = _owner_for(actor, data.get("owner"))
    server = data.get("server")
    if server is None or not hosting_servers(actor).filter(pk=server.pk).exists():
        raise ValidationError({"server": "Choose one of your servers."})
    site = Website(
        domain=_domain(data.get("domain")),
        aliases=_aliases(_domain(data.get("domain")), data.get("aliases")),
        server=server,
        owner=owner,
        kind=data.get("kind") or Website.Kind.STATIC,
        php_version=data.get("php_version") or "",
        upstream=(data.get("upstream") or "").strip(),
        options=_field("options", with_password_hashes, data.get("options") or {}, {}),
    )
    if site.is_app:
        site.start_command = start_command_of(data.get("start_command"), site.kind)
        refuse_nul_in(data, ["app_env"])
        env = _field("app_env", appsites.merge_env, {}, data.get("app_env") or {})
        site.app_env = _env_json(env)
    else:
        site.start_command = data.get("start_command") or ""
        site.app_env = "" if not data.get("app_env") else "{}"
    site.full_clean()
    check_kind(site, actor)
    plans.check_allowed(owner, kind=site.kind, php_version=site.php_version or None)
    site.options = parse_options(
        site.options, names=tuple(site.names), own_addresses=own_addresses(server)
    ).to_json()
    with transaction.atomic():
        plans.enforce_limit(owner, "websites", actor=actor)
        plans.enforce_limit(owner, "disk_mb", actor=actor, adding=0)  # measured: not over
        if site.is_app:  # the server row's lock: two creations never take one port
            Server.objects.select_for_update().filter(pk=server.pk).first()
            site.app_port = _field("server", appsites.allocate_port, server)
        site.save()
        account = account_for(site)
        from monitoring.services import ensure_site_check  # the site's uptime check

        ensure_site_check(site)
        # Its A/AAAA records where the owner's zone is the panel's (never overwriting).
        from dns.services import do_add_site_records
        from websites.dnscheck import server_addresses

        do_add_site_records(
            actor=actor,
            owner=owner,
            names=list(site.names),
            addresses=sorted(server_addresses(server)),
        )
        audit.record(
            "website.create",
            site,
            actor=actor,
            changes={"domain": [None, site.domain], "kind": [None, site.kind]},
        )
        site.operation = _start(
            site,
            "website.create",
            "websites.tasks.converge_site",
            actor=actor,
            units={*_units_of(site), account.unit},
        )
    return site


def _may_suspend(actor, site: Website) -> None:
    role = role_of(actor) if actor is not None else ADMIN
    if role == ADMIN or (role == RESELLER and site.owner.reseller_id == actor.pk):
        return
    raise ValidationError("Only your provider can suspend or unsuspend a site.")


def do_suspend_website(site: Website, *, actor, reason: str = "", quota: bool = False) -> Website:
    """The site answers 503 with the suspension page; its PHP pool stops; when every site of
    the owner on that server is suspended, the system account is locked too. ``quota``: the
    hourly quota check suspends (websites/quota.py), and only it lifts such a suspension."""
    _may_suspend(actor, site)
    refuse_nul_in({"reason": reason}, ["reason"])
    if site.suspended:
        if not quota and site.suspended_for_quota:
            # Staff suspend a site the quota had suspended: theirs now, kept when back under.
            with transaction.atomic():
                Website.objects.filter(pk=site.pk).update(
                    suspended_for_quota=False, suspension_reason=reason[:200]
                )
                site.refresh_from_db()
                audit.record(
                    "website.suspend",
                    site,
                    actor=actor,
                    changes={"suspended_for_quota": [True, False], "reason": reason[:200]},
                )
        return site
    with transaction.atomic():
        Website.objects.filter(pk=site.pk).update(
            suspended=True,
            suspension_reason=reason[:200],
            suspended_for_quota=quota,
            status=Website.Status.PENDING,
        )
        site.refresh_from_db()
        changes = {"suspended": [False, True], "reason": reason[:200]}
        if quota:
            changes["suspended_for_quota"] = [False, True]
        audit.record("website.suspend", site, actor=actor, changes=changes)
        site.operation = _start(
            site, "website.suspend", "websites.tasks.converge_site", actor=actor, units={site.unit}
        )
    return site


def do_unsuspend_website(site: Website, *, actor, quota: bool = False) -> Website:
    """Lift a suspension. ``quota``: the quota check lifting its own (refused, as a no-op,
    for a suspension staff chose)."""
    _may_suspend(actor, site)
    if not site.suspended or (quota and not site.suspended_for_quota):
        return site
    with transaction.atomic():
        updated = Website.objects.filter(pk=site.pk, suspended=True)
        if quota:
            updated = updated.filter(suspended_for_quota=True)
        if not updated.update(
            suspended=False,
            suspension_reason="",
            suspended_for_quota=False,
            status=Website.Status.PENDING,
        ):
            return site
        site.refresh_from_db()
        changes = {"suspended": [True, False]}
        if quota:
            changes["suspended_for_quota"] = [True, False]
        audit.record("website.unsuspend", site, actor=actor, changes=changes)
        site.operation = _start(
            site,
            "website.unsuspend",
            "websites.tasks.converge_site",
            actor=actor,
            units={site.unit},
        )
    return site


def do_delete_website(site: Website, *, actor) -> Website:
    """Marks the site for deletion; the Operation removes its vhost, pool and files (and
    the system account with the owner's last site on that server), then the row."""
    if site.status == Website.Status.DELETING:
        return site
    with transaction.atomic():
        Website.objects.filter(pk=site.pk).update(status=Website.Status.DELETING)
        site.refresh_from_db()
        audit.record("website.delete", site, actor=actor)
        site.operation = _start(
            site, "website.delete", "websites.tasks.delete_site", actor=actor, units={site.unit}
        )
    return site


def do_retry_website(site: Website, *, actor) -> Website:
    """Bring a failed (or pending) site to its server again."""
    with transaction.atomic():
        account = account_for(site)
        site.operation = _start(
            site,
            "website.apply",
            "websites.tasks.converge_site",
            actor=actor,
            units={site.unit, account.unit},
        )
    return site


# --- app sites: start, stop, restart, status ---------------------------------------------


def do_app_action(site: Website, *, actor, action: str):
    """An Operation on an app site's process: ``start``/``stop`` also change whether the app
    should run (its program is written again: a stopped app stays stopped through later
    applies), ``restart`` restarts it, ``status`` reads what the process manager says."""
    if action not in APP_ACTIONS:
        raise ValidationError({"action": f"Choose one of {', '.join(APP_ACTIONS)}."})
    if not site.is_app:
        raise ValidationError("Only Node.js and Python app sites have a process.")
    if site.status == Website.Status.DELETING:
        raise ValidationError("The site is being deleted.")
    if site.suspended and action != "status":
        raise ValidationError("The site is suspended: its app does not run.")
    with transaction.atomic():
        if action in ("start", "stop") and site.app_running != (action == "start"):
            site.app_running = action == "start"
            Website.objects.filter(pk=site.pk).update(app_running=site.app_running)
        if action in ("start", "stop"):
            # Applied again: a program taken back after a crash comes back with a start.
            mark_dirty(site.server, {site.unit, appsites.RUNNER_UNIT})
        if action != "status":
            audit.record(f"website.app_{action}", site, actor=actor)
        return start_operation(
            kind=f"website.app_{action}",
            task="websites.tasks.app_action",
            owner=site.owner,
            requested_by=actor,
            target=site,
            target_action=CHANGE,
            lock_key=site.server.lock_key,
            args={"site_id": site.pk, "action": action},
        )


# --- system accounts: SFTP password and key -------------------------------------------


def do_set_sftp_password(account: SystemAccount, *, actor, password: str):
    from websites.sysaccounts import validate_password

    validate_password(password)
    plans.check_allowed(account.user, sftp=True)
    audit.record("system_account.password", account, actor=actor)
    return start_operation(
        kind="system_account.password",
        task="websites.tasks.set_sftp_password",
        owner=account.user,
        requested_by=actor,
        target=account,
        target_action=CHANGE,
        lock_key=account.server.lock_key,
        args={"account_id": account.pk, "password": _seal(password)},
    )


def do_set_ssh_key(account: SystemAccount, *, actor, key: str) -> SystemAccount:
    from websites.sysaccounts import validate_ssh_key

    line = validate_ssh_key(key)
    if line:
        plans.check_allowed(account.user, sftp=True)
    before = account.ssh_key
    with transaction.atomic():
        SystemAccount.objects.filter(pk=account.pk).update(ssh_key=line)
        account.refresh_from_db()
        audit.record(
            "system_account.key", account, actor=actor, changes={"ssh_key": [before, line]}
        )
        start_operation(
            kind="system_account.key",
            task="websites.tasks.push_ssh_key",
            owner=account.user,
            requested_by=actor,
            target=account,
            target_action=CHANGE,
            lock_key=account.server.lock_key,
            args={"account_id": account.pk},
        )
    return account


def _seal(secret: str) -> str:
    """Operation args are stored: the password travels encrypted, the task opens it."""
    from core.crypto import encrypt

    return encrypt(secret)


def start_read_logs(site: Website, *, actor):
    """An Operation whose log lines are the last lines of the site's access and error logs."""
    return start_operation(
        kind="website.logs",
        task="websites.tasks.read_logs",
        owner=site.owner,
        requested_by=actor,
        target=site,
        target_action=CHANGE,
        lock_key="",
        args={"site_id": site.pk},
    )


def start_follow_logs(site: Website, *, actor, seconds: int | None = None):
    """An Operation that streams the site's log lines (the last ones, then new ones) while
    the site's page is open: the page cancels it when it closes; it ends by itself after
    ``websites.tasks.FOLLOW_SECONDS``."""
    from websites.tasks import FOLLOW_SECONDS

    return start_operation(
        kind="website.logs.follow",
        task="websites.tasks.follow_logs",
        owner=site.owner,
        requested_by=actor,
        target=site,
        target_action=CHANGE,
        lock_key="",
        args={"site_id": site.pk, "seconds": min(seconds or FOLLOW_SECONDS, FOLLOW_SECONDS)},
    )


# --- basic auth on paths (typed option ``auth_paths``) ------------------------------------


def _auth_entries(site: Website) -> list[dict]:
    """The stored protected paths, users by name (their hashes are kept by
    ``with_password_hashes``), ready to change and send through ``do_update_website``."""
    stored = Website.objects.get(pk=site.pk).options or {}
    return [
        {"path": e["path"], "users": [{"name": u["name"]} for u in e["users"]]}
        for e in stored.get("auth_paths", [])
    ]


def _with_auth(site: Website, entries: list[dict], *, actor) -> Website:
    stored = Website.objects.get(pk=site.pk).options or {}
    options = {k: v for k, v in stored.items() if k != "auth_paths"}
    if entries:
        options["auth_paths"] = entries
    return do_update_website(site, actor=actor, data={"options": options})


def _auth_entry(entries: list[dict], path) -> dict:
    for entry in entries:
        if entry["path"] == path:
            return entry
    raise ValidationError({"path": f"{path} is not a protected path of this site."})


def do_protect_path(site: Website, *, actor, data: dict) -> Website:
    """Protect ``path`` with basic auth; its first user is ``name`` with ``password``."""
    accept_only(data, ["path", "name", "password"])
    refuse_nul_in(data, ["path", "name", "password"])
    entries = _auth_entries(site)
    if any(e["path"] == data.get("path") for e in entries):
        raise ValidationError({"path": f"{data.get('path')} is protected already."})
    user = {"name": data.get("name"), "password": data.get("password")}
    return _with_auth(site, [*entries, {"path": data.get("path"), "users": [user]}], actor=actor)


def do_unprotect_path(site: Website, *, actor, data: dict) -> Website:
    accept_only(data, ["path"])
    entries = _auth_entries(site)
    entry = _auth_entry(entries, data.get("path"))
    return _with_auth(site, [e for e in entries if e is not entry], actor=actor)


def do_set_auth_user(site: Website, *, actor, data: dict) -> Website:
    """Add user ``name`` to a protected path, or give it a new password."""
    accept_only(data, ["path", "name", "password"])
    refuse_nul_in(data, ["path", "name", "password"])
    entries = _auth_entries(site)
    entry = _auth_entry(entries, data.get("path"))
    user = {"name": data.get("name"), "password": data.get("password")}
    others = [u for u in entry["users"] if u["name"] != data.get("name")]
    entry["users"] = [*others, user]
    return _with_auth(site, entries, actor=actor)


def do_remove_auth_user(site: Website, *, actor, data: dict) -> Website:
    accept_only(data, ["path", "name"])
    entries = _auth_entries(site)
    entry = _auth_entry(entries, data.get("path"))
    users = [u for u in entry["users"] if u["name"] != data.get("name")]
    if len(users) == len(entry["users"]):
        raise ValidationError({"name": f"{data.get('name')} is not a user of {entry['path']}."})
    if not users:
        raise ValidationError({"name": "The last user: remove the protected path instead."})
    entry["users"] = users
    return _with_auth(site, entries, actor=actor)
