"""What websites contribute to a server's managed files: per site (one unit) its vhost and,
for PHP sites, its own PHP-FPM pool (ondemand, running as the owner's system account,
``open_basedir`` to its home), for app sites their program and environment
(websites/appsites.py). Deleted sites are not rendered, so their files are removed."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from django.core.exceptions import ValidationError

from servers.engine import ManagedFile, Probe, ProfileKey, UnitFailed
from websites import appsites
from websites.checks import own_addresses
from websites.models import Subscription, SystemAccount, Website
from websites.options import parse_options
from websites.validators import DOMAIN
from websites.vhost import SiteEnv, auth_file_name, render_htpasswd, render_vhost

CHUNK = 500
AUTH_DIR = "htpasswd"  # below the account's home
RESOLVER = re.compile(r"[0-9A-Fa-f.:\[\]]+( [0-9A-Fa-f.:\[\]]+)*")
UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def home_dir(profile, account: str) -> str:
    return f"{profile.webroot_base.rstrip('/')}/{account}"


@dataclass(frozen=True)
class PhpLimits:
    """A PHP site's pool limits, from its owner's plan (the plan's defaults without one).
    Whole numbers in their ranges only: checked again here, since they reach the file."""

    max_children: int = 5
    memory_limit_mb: int = 128
    max_execution_time: int = 30
    upload_max_mb: int = 32

    RANGES = {
        "max_children": (1, 100),
        "memory_limit_mb": (16, 4096),
        "max_execution_time": (1, 3600),
        "upload_max_mb": (1, 2048),
    }

    @classmethod
    def of_plan(cls, plan) -> PhpLimits:
        if plan is None:
            return cls()
        return cls(
            max_children=plan.php_max_children,
            memory_limit_mb=plan.php_memory_limit_mb,
            max_execution_time=plan.php_max_execution_time,
            upload_max_mb=plan.php_upload_max_mb,
        )

    def checked(self) -> PhpLimits:
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = self.RANGES[f.name]
            if type(value) is not int or not low <= value <= high:
                raise ValidationError(
                    f"PHP {f.name} {value!r} is not a number from {low} to {high}."
                )
        return self


def php_limits_of(owner_ids) -> dict[int, PhpLimits]:
    """Each owner's PHP limits from their plan, in one query (owners without a plan are
    absent: they get the defaults)."""
    subs = Subscription.objects.filter(user_id__in=set(owner_ids)).select_related("plan")
    return {sub.user_id: PhpLimits.of_plan(sub.plan) for sub in subs}


SENDMAIL = "/usr/sbin/sendmail"


def sendmail_path(site: Website) -> str:
    """PHP's mail() command for a site: envelope sender ``noreply@<site domain>`` (an address
    Postfix lets the site's Linux user use, mail/apply.py's local_senders), so mail with a
    From of the site's domain (WordPress's wordpress@...) is sent and DKIM-signed; without
    ``-f`` it would be the user at the mail host and OpenDKIM's hooks refuse it."""
    if not DOMAIN.fullmatch(site.domain):
        raise ValidationError(f"Site domain {site.domain!r} is not a domain name.")
    return f"{SENDMAIL} -t -i -f noreply@{site.domain}"


def render_pool(site: Website, profile, account: str, limits: PhpLimits | None = None) -> str:
    limits = (limits or PhpLimits()).checked()
    home = home_dir(profile, account)
    scratch = f"{home}/tmp"  # noqa: S108 - the account's own, not the shared /tmp
    owner = profile.php_listen_owner
    if not UNIX_NAME.fullmatch(owner):
        raise ValidationError(f"php_listen_owner {owner!r} is not a user name.")
    return (
        "; Managed by the hosting panel: changes here are reported as drift and undone.\n"
        f"[{site.pool_name}]\n"
        f"user = {account}\n"
        f"group = {account}\n"
        f"listen = {pool_socket(site, profile)}\n"
        f"listen.owner = {owner}\n"
        "listen.mode = 0600\n"
        "pm = ondemand\n"
        f"pm.max_children = {limits.max_children}\n"
        "pm.process_idle_timeout = 10s\n"
        "pm.max_requests = 500\n"
        "chdir = /\n"
        "security.limit_extensions = .php\n"
        f"php_admin_value[open_basedir] = {home}/sites/{site.domain}/:{scratch}/\n"
        f"php_admin_value[upload_tmp_dir] = {scratch}\n"
        f"php_admin_value[session.save_path] = {scratch}\n"
        f"php_admin_value[sys_temp_dir] = {scratch}\n"
        # The plan's limits: admin values, so a script's ini_set cannot raise them.
        f"php_admin_value[memory_limit] = {limits.memory_limit_mb}M\n"
        f"php_admin_value[max_execution_time] = {limits.max_execution_time}\n"
        f"php_admin_value[upload_max_filesize] = {limits.upload_max_mb}M\n"
        f"php_admin_value[post_max_size] = {limits.upload_max_mb}M\n"
        f"php_admin_value[sendmail_path] = {sendmail_path(site)}\n"
    )


def pool_socket(site: Website, profile) -> str:
    return f"{profile.php_socket_dir.rstrip('/')}/{site.pool_name}.sock"


class WebsiteFiles:
    unit_prefix = "website:"
    profile_keys = (
        ProfileKey(
            "webroot_base",
            "/home",
            "path",
            "Homes of the customers' system accounts; web roots are "
            "<base>/<account>/sites/<domain>/public.",
        ),
        ProfileKey("php_socket_dir", "/run/php", "path", "PHP-FPM sockets of the sites' pools."),
        ProfileKey(
            "php_listen_owner", "www-data", "text", "nginx's user (owns the pools' sockets)."
        ),
        ProfileKey(
            "nginx_resolver",
            "1.1.1.1 9.9.9.9",
            "text",
            "DNS servers nginx asks for reverse proxies' upstream host names.",
        ),
        ProfileKey(
            "nginx_group",
            "www-data",
            "text",
            "The group nginx's workers run as: it reads the password files of protected paths.",
        ),
    )

    def files(self, server, profile, units):
        sites = (
            Website.objects.filter(server=server)
            .exclude(status=Website.Status.DELETING)
            .select_related("owner")
            .only(
                "uuid",
                "domain",
                "aliases",
                "kind",
                "php_version",
                "upstream",
                "start_command",
                "app_env",
                "app_port",
                "app_running",
                "suspended",
                "options",
                "custom_directives",
                "owner__account_name",
            )
        )
        if units is not None:
            sites = sites.filter(
                uuid__in=[
                    u.removeprefix(self.unit_prefix)
                    for u in units
                    if u.startswith(self.unit_prefix)
                ]
            )
        sites_dir = profile.nginx_sites_dir.rstrip("/")
        own = own_addresses(server)
        # Per-site logs only where the account's directories are known to exist (nginx -t
        # opens log files).
        prepared = set(
            SystemAccount.objects.filter(
                server=server,
                status__in=[SystemAccount.Status.ACTIVE, SystemAccount.Status.LOCKED],
            ).values_list("user_id", flat=True)
        )
        sites = list(sites.order_by("domain"))
        limits = php_limits_of(s.owner_id for s in sites if s.kind == Website.Kind.PHP)
        for site in sites:
            account = site.owner.account_name
            logs = site.owner_id in prepared
            try:
                files = list(
                    self._site_files(
                        site, profile, account, sites_dir, own, logs, limits.get(site.owner_id)
                    )
                )
                if site.is_app and not site.suspended:
                    if not logs:  # its files belong to the account's user: it must exist
                        raise ValidationError(f"The system account {account} is not ready.")
                    files += list(appsites.site_files(site, server, profile, account))
            except ValidationError as exc:  # stored around the services: keep what is live
                yield UnitFailed(site.unit, "Not rendered: " + " ".join(exc.messages))
                continue
            yield from files

    def _site_files(
        self, site, profile, account, sites_dir, own, logs: bool, limits: PhpLimits | None
    ):
        home = home_dir(profile, account)
        php = site.kind == Website.Kind.PHP and not site.suspended
        resolver = profile.nginx_resolver
        if not RESOLVER.fullmatch(resolver):
            raise ValidationError(f"nginx_resolver {resolver!r} is not a list of addresses.")
        env = SiteEnv(
            root=f"{home}/sites/{site.domain}/public",
            log_dir=f"{home}/logs" if logs else "",
            php_socket=pool_socket(site, profile) if php else "",
            app_port=site.app_port or 0,
            resolver=resolver,
            # In the root-owned home (the account cannot replace the files), beside the
            # site's directory and outside every web root.
            auth_dir=f"{home}/{AUTH_DIR}" if logs else "",
        )
        text, revision = render_vhost(site, profile.nginx_listen, profile.webroot_base, own, env)
        if not site.suspended:
            yield from self._auth_files(site, profile, env)
        if php:
            version = site.php_version
            yield ManagedFile(
                path=f"{profile.php_pool_dir.replace('{php}', version).rstrip('/')}/"
                f"{site.pool_name}.conf",
                content=render_pool(site, profile, account, limits).encode(),
                service=f"php-fpm{version}",
                unit=site.unit,
            )
        yield ManagedFile(
            path=f"{sites_dir}/{site.domain}.conf",
            content=text.encode(),
            service="nginx",
            unit=site.unit,
            probe=Probe(hosts=tuple(site.names), revision=revision),
        )

    def _auth_files(self, site, profile, env: SiteEnv):
        """One password file per protected path: root's, readable by nginx's group only."""
        options = parse_options(site.options)  # checked whole by render_vhost already
        if not options.auth_paths:
            return
        group = profile.nginx_group
        if not UNIX_NAME.fullmatch(group):
            raise ValidationError(f"nginx_group {group!r} is not a group name.")
        for guard in options.auth_paths:
            yield ManagedFile(
                path=f"{env.auth_dir}/{auth_file_name(site.domain, guard.path)}",
                content=render_htpasswd(guard.users).encode(),
                service="nginx",
                unit=site.unit,
                mode=0o640,
                group=group,
            )

    def report(self, server, ok: set[str], failed: dict[str, str]) -> None:
        """Statuses change in bulk and only where they differ."""
        mine = self.unit_prefix
        ids = sorted(u.removeprefix(mine) for u in ok if u.startswith(mine))
        live = Website.objects.filter(server=server).exclude(status=Website.Status.DELETING)
        for i in range(0, len(ids), CHUNK):
            chunk = live.filter(uuid__in=ids[i : i + CHUNK])
            chunk.filter(suspended=False).exclude(
                status=Website.Status.ACTIVE, status_message=""
            ).update(status=Website.Status.ACTIVE, status_message="")
            chunk.filter(suspended=True).exclude(status=Website.Status.SUSPENDED).update(
                status=Website.Status.SUSPENDED, status_message=""
            )
        for unit, message in sorted(failed.items()):
            if not unit.startswith(mine):
                continue
            live.filter(uuid=unit.removeprefix(self.unit_prefix)).update(
                status=Website.Status.FAILED, status_message=message[:4000]
            )
