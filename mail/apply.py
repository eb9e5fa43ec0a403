"""What mail contributes to a server's managed files, and the two programs that read them.

- Postfix: four maps in ``mail_map_dir`` (``domains``, ``mailboxes``, ``aliases``,
  ``senders``) for ``virtual_mailbox_domains``, ``virtual_mailbox_maps``,
  ``virtual_alias_maps`` and ``smtpd_sender_login_maps`` (submission refuses a MAIL FROM
  the logged-in mailbox does not own: ``reject_sender_login_mismatch``). They list
  every domain of the server, so they are one unit (``mail:maps``). Validated by compiling
  each with ``postmap`` and ``postfix check``; reloaded by ``postmap`` + ``postfix reload``.
- OpenDKIM: each domain's private key in ``opendkim_key_dir`` (the domain's unit) and the
  KeyTable/SigningTable in ``opendkim_dir`` (with the maps); keys checked with ``openssl
  pkey`` and the configuration with ``opendkim -n``; reloaded by SIGUSR1.
- Dovecot: one passwd-file per domain in ``dovecot_users_dir`` (unit ``maildomain:<uuid>``),
  read through ``passwd-file .../%d`` as passdb and userdb, so a bad domain fails alone.
  Validated line by line and with ``doveconf -n``; reloaded with ``doveadm reload`` and
  verified by ``doveadm user`` finding the new users.

Every value reaching a file went through mail/validators.py and is checked again here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.db.models import Q

from mail import config, dkim
from mail.models import CONFIG_UNIT, MAPS_UNIT, MailAlias, Mailbox, MailDomain, Status
from mail.validators import FOREIGN_LOCAL, LOCAL_PART, SHA512_CRYPT, spam_list
from servers.engine import Job, ManagedFile, ProfileKey, Service, ServiceRun, Step, UnitFailed
from servers.models import AppliedFile
from websites.validators import DOMAIN

HERE = Path(__file__).parent
POSTFIX_CHECK = (HERE / "postfix_check.sh").read_text()
POSTFIX_RELOAD = (HERE / "postfix_reload.sh").read_text()
DOVECOT_CHECK = (HERE / "dovecot_check.sh").read_text()
DOVECOT_RELOAD = (HERE / "dovecot_reload.sh").read_text()
DKIM_CHECK = (HERE / "dkim_check.sh").read_text()
DKIM_RELOAD = (HERE / "dkim_reload.sh").read_text()
MAPS = ("domains", "mailboxes", "aliases", "senders", "local_senders")
LOGIN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
HEADER = "# Managed by the hosting panel: changes here are reported as drift and undone.\n"
CHUNK = 500
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]{0,200}")


class MailService(Service):
    """The shape the three programs share: after staging, one check script (``check``) run
    with ``check_args``; its first words name the file it blames (``name: why``), else every
    unit of the run fails with its output. The reload script starts the program when the run
    writes its configuration (``mail:config``: a server being prepared) and it does not run."""

    validated_by_jobs = True
    check: str = ""

    def check_args(self, run: ServiceRun) -> list[str]:
        raise NotImplementedError

    def validation_jobs(self, run: ServiceRun) -> list[Job]:
        if not run.files and not run.removed:
            return []
        return [Job(self.name, ["sh", "-c", self.check, f"{self.name}-check",
                                *self.check_args(run)])]  # fmt: skip

    def validate(self, run: ServiceRun) -> dict[str, str]:
        result = run.jobs.get(self.name)
        if result is None or result.ok:
            return {}
        output = result.output.strip()
        blamed = {
            f.unit
            for path, f in run.files.items()
            if output.startswith(path.rsplit("/", 1)[-1] + ":")
        }
        return {unit: output[:2000] for unit in (blamed or run.units())}

    @staticmethod
    def start_word(run: ServiceRun) -> str:
        return "start" if CONFIG_UNIT in run.units() else "no-start"


class PostfixService(MailService):
    name = "postfix"
    reload_order = 40
    check = POSTFIX_CHECK
    profile_keys = (
        ProfileKey("postfix_config_dir", "/etc/postfix", "path", "Postfix's config_directory."),
        ProfileKey("mail_map_dir", "/etc/postfix/panel", "path", "The panel's Postfix maps."),
        ProfileKey("postfix_reload_timeout", 20, "seconds", "How long a reload may take."),
        ProfileKey("mail_hostname", "", "text", "The server's public mail host name (MX records)."),
        ProfileKey("postfix_queue_dir", "/var/spool/postfix", "path", "queue_directory."),
        ProfileKey("postfix_data_dir", "/var/lib/postfix", "path", "data_directory."),
        ProfileKey("postfix_log_file", "", "path", "maillog_file (empty: syslog)."),
        ProfileKey(
            "postfix_transport_map", "", "path", "A transport map of your own (empty: none)."
        ),
        ProfileKey(
            "mail_listen_addresses", "all", "text", "Addresses SMTP and IMAP listen on (all)."
        ),
        ProfileKey("smtp_listen", "25", "listen", "SMTP (port or address:port)."),
        ProfileKey("submission_listen", "587", "listen", "Submission with SASL and TLS."),
        ProfileKey(
            "mail_mynetworks", "127.0.0.0/8", "text", "Networks that may relay unauthenticated."
        ),
        ProfileKey("mail_tls_cert", "", "path", "Certificate chain (empty: see docs/mail.md)."),
        ProfileKey("mail_tls_key", "", "path", "Its private key."),
        ProfileKey(
            "mail_policy_state_dir",
            "/var/lib/hosting-panel/mail-policy",
            "path",
            "The policy service's counters (owned by nobody).",
        ),
    )

    def check_args(self, run: ServiceRun) -> list[str]:
        p = run.profile
        return [p.postfix_config_dir, p.mail_map_dir.rstrip("/"), run.run_id, *MAPS]

    def reload_step(self, run: ServiceRun) -> Step:
        p = run.profile
        timeout = p.postfix_reload_timeout
        argv = ["sh", "-c", POSTFIX_RELOAD, "postfix-reload", p.postfix_config_dir,
                p.mail_map_dir.rstrip("/"), str(timeout), self.start_word(run), *MAPS]  # fmt: skip
        return Step(argv, timeout + 30)


class DovecotService(MailService):
    name = "dovecot"
    reload_order = 30
    check = DOVECOT_CHECK
    profile_keys = (
        ProfileKey("dovecot_conf", "/etc/dovecot/dovecot.conf", "path", "Dovecot's main file."),
        ProfileKey(
            "dovecot_users_dir", "/etc/dovecot/panel-users", "path", "Users, a file per domain."
        ),
        ProfileKey("dovecot_group", "dovecot", "text", "Dovecot's group (reads users files)."),
        ProfileKey("vmail_base", "/var/vmail", "path", "Maildirs: <base>/<domain>/<local>."),
        ProfileKey("vmail_user", "vmail", "text", "The user owning the maildirs."),
        ProfileKey("dovecot_reload_timeout", 20, "seconds", "How long a reload may take."),
        ProfileKey("dovecot_base_dir", "/run/dovecot", "path", "Dovecot's base_dir."),
        ProfileKey("dovecot_state_dir", "/var/lib/dovecot", "path", "Dovecot's state_dir."),
        ProfileKey("dovecot_log_path", "", "path", "log_path (empty: syslog)."),
        ProfileKey("imap_listen", "143", "listen", "IMAP (STARTTLS before any login)."),
        ProfileKey("managesieve_listen", "4190", "listen", "ManageSieve."),
        ProfileKey(
            "dovecot_sieve_dir", "/etc/dovecot/panel-sieve", "path", "Auto-responders' scripts."
        ),
        ProfileKey(
            "dovecot_submission_host",
            "",
            "text",
            "address:port auto-replies are sent to (empty: the sendmail binary).",
        ),
        ProfileKey(
            "dovecot_lmtp_socket",
            "/var/spool/postfix/private/dovecot-lmtp",
            "path",
            "LMTP socket Postfix delivers to.",
        ),
        ProfileKey(
            "dovecot_auth_socket",
            "/var/spool/postfix/private/auth",
            "path",
            "Auth socket Postfix's SASL asks.",
        ),
    )

    def check_args(self, run: ServiceRun) -> list[str]:
        p = run.profile
        return [p.dovecot_conf, p.dovecot_users_dir.rstrip("/"), run.run_id,
                p.dovecot_sieve_dir.rstrip("/")]  # fmt: skip

    def reload_step(self, run: ServiceRun) -> Step:
        users = []
        users_dir = run.profile.dovecot_users_dir.rstrip("/") + "/"
        for path, f in run.live_files().items():
            first = f.content.split(b"\n", 2)[1:2]  # the line after the header
            if path.startswith(users_dir) and first and b":" in first[0]:
                users.append(first[0].split(b":", 1)[0].decode())
        timeout = run.profile.dovecot_reload_timeout
        argv = ["sh", "-c", DOVECOT_RELOAD, "dovecot-reload", run.profile.dovecot_conf,
                str(timeout), self.start_word(run)]  # fmt: skip
        return Step(argv, timeout + 30, stdin="".join(f"{u}\n" for u in sorted(users)).encode())


class OpenDkimService(MailService):
    name = "opendkim"
    reload_order = 35  # before Postfix, whose mail it signs
    check = DKIM_CHECK
    profile_keys = (
        ProfileKey("opendkim_conf", "/etc/opendkim.conf", "path", "OpenDKIM's configuration."),
        ProfileKey("opendkim_dir", "/etc/opendkim", "path", "KeyTable and SigningTable."),
        ProfileKey("opendkim_key_dir", "/etc/opendkim/keys", "path", "Private keys."),
        ProfileKey("opendkim_user", "opendkim", "text", "The user OpenDKIM runs as."),
        ProfileKey("opendkim_pid_file", "/run/opendkim/opendkim.pid", "path", "Its pid."),
        ProfileKey("opendkim_socket", "inet:8891@127.0.0.1", "text", "The milter's socket."),
        ProfileKey(
            "opendkim_safe_keys", "yes", "text", "no: keys may sit below a writable directory."
        ),
    )

    def check_args(self, run: ServiceRun) -> list[str]:
        p = run.profile
        return [p.opendkim_conf, p.opendkim_key_dir.rstrip("/"), run.run_id,
                p.opendkim_dir.rstrip("/")]  # fmt: skip

    def reload_step(self, run: ServiceRun) -> Step:
        p = run.profile
        argv = ["sh", "-c", DKIM_RELOAD, "dkim-reload", p.opendkim_pid_file, "10",
                self.start_word(run), p.opendkim_conf]  # fmt: skip
        return Step(argv, 40)


def _checked_path(value: str, key: str) -> str:
    if not SAFE_PATH.fullmatch(value):
        raise ValueError(f"{key} {value!r} is not a plain absolute path.")
    return value.rstrip("/")


def render_users(domain: MailDomain, boxes: list[Mailbox], vmail_base: str) -> str:
    """A domain's Dovecot passwd-file: ``user:{SHA512-CRYPT}hash::::home::extra``. A
    suspended mailbox (or domain) keeps its userdb entry but may not log in."""
    if not DOMAIN.fullmatch(domain.domain):
        raise ValueError(f"{domain.domain!r} is not a domain name.")
    lines = [HEADER.rstrip("\n")]
    for box in boxes:
        if not LOCAL_PART.fullmatch(box.local_part) or not SHA512_CRYPT.fullmatch(
            box.password_hash
        ):
            raise ValueError(f"Mailbox {box.local_part!r} holds a value the file cannot take.")
        extra = f"userdb_quota_rule=*:storage={int(box.quota_mb)}M"
        if box.refused or domain.suspended:
            extra += " nologin reason=suspended"
        home = f"{vmail_base}/{domain.domain}/{box.local_part}"
        lines.append(f"{box.local_part}@{domain.domain}:{box.password_hash}::::{home}::{extra}")
    return "\n".join(lines) + "\n"


def _address_ok(address: str) -> bool:
    local, _, name = address.rpartition("@")
    return bool(FOREIGN_LOCAL.fullmatch(local)) and bool(DOMAIN.fullmatch(name))


def render_maps(
    domains: list[MailDomain], boxes: list[Mailbox], aliases: list[MailAlias]
) -> dict[str, str]:
    """The four Postfix maps of a server. Suspended domains and mailboxes are left out, so
    Postfix refuses their mail at RCPT time (and their logins may send as nothing).

    ``senders`` (smtpd_sender_login_maps): which logins may use an address as MAIL FROM on
    submission: a mailbox itself; an alias the mailboxes of its domain it forwards to; any
    other address of a catch-all domain its mailboxes. Never another domain's mailbox."""
    live = {d.pk: d for d in domains if not d.suspended and DOMAIN.fullmatch(d.domain)}
    out = {name: [HEADER.rstrip("\n")] for name in MAPS}
    for d in sorted(live.values(), key=lambda d: d.domain):
        out["domains"].append(f"{d.domain} OK")
    for box in boxes:
        d = live.get(box.domain_id)
        if d is None or box.refused or not LOCAL_PART.fullmatch(box.local_part):
            continue
        out["mailboxes"].append(f"{box.local_part}@{d.domain} {d.domain}/{box.local_part}/")
    # A catch-all (``@domain``) would also catch the domain's mailboxes (Postfix looks up
    # virtual_alias_maps first): each mailbox, suspended ones too, maps to itself before it.
    catch = {pk: d for pk, d in live.items() if d.catch_all and _address_ok(d.catch_all)}
    if catch:
        for box in boxes:
            d = catch.get(box.domain_id)
            if d is not None and LOCAL_PART.fullmatch(box.local_part):
                out["aliases"].append(f"{box.local_part}@{d.domain} {box.local_part}@{d.domain}")
        for d in sorted(catch.values(), key=lambda d: d.domain):
            out["aliases"].append(f"@{d.domain} {d.catch_all}")
    for alias in aliases:
        d = live.get(alias.domain_id)
        targets = [t for t in alias.destination_list if _address_ok(t)]
        if d is None or not targets or not LOCAL_PART.fullmatch(alias.local_part):
            continue
        out["aliases"].append(f"{alias.local_part}@{d.domain} {','.join(targets)}")
    own = {}  # domain pk -> its live mailboxes' addresses
    for box in boxes:
        d = live.get(box.domain_id)
        if d is not None and not box.refused and LOCAL_PART.fullmatch(box.local_part):
            address = f"{box.local_part}@{d.domain}"
            own.setdefault(d.pk, []).append(address)
            out["senders"].append(f"{address} {address}")
    for alias in aliases:
        d = live.get(alias.domain_id)
        if d is None or not LOCAL_PART.fullmatch(alias.local_part):
            continue
        mine = set(own.get(d.pk, []))
        owners = sorted({t.lower() for t in alias.destination_list} & mine)
        if owners:
            out["senders"].append(f"{alias.local_part}@{d.domain} {','.join(owners)}")
    for d in sorted(catch.values(), key=lambda d: d.domain):
        if own.get(d.pk):
            out["senders"].append(f"@{d.domain} {','.join(own[d.pk])}")
    return {name: "\n".join(lines) + "\n" for name, lines in out.items()}


def render_local_senders(
    hostname: str, trusted: list[str], sites: list[tuple[str, list[str]]]
) -> str:
    """``local_login_sender_maps``: the envelope senders each UNIX login may give the
    sendmail binary. ``trusted`` logins (root, the maildirs' owner) anything; a site's Linux
    user (``sites``: login, its sites' names on this server) any address of its own sites'
    names and itself (bare and at the mail host name: cron's and ``mail()``'s default);
    anyone else nothing (postdrop refuses the message)."""
    lines = [HEADER.rstrip("\n")]
    lines.extend(f"{login} *" for login in trusted if LOGIN.fullmatch(login))
    names: dict[str, set[str]] = {}
    for login, domains in sites:
        if LOGIN.fullmatch(login) and login not in trusted:
            # Never the host name: root@ and vmail@ it are trusted (panel-setup.lua).
            lowered = (d.lower() for d in domains)
            names.setdefault(login, set()).update(
                d for d in lowered if DOMAIN.fullmatch(d) and d != hostname
            )
    for login in sorted(names):
        # Without -f sendmail gives the bare login (qualified later with myorigin).
        own = [login, *([f"{login}@{hostname}"] if DOMAIN.fullmatch(hostname) else [])]
        lines.append(" ".join([login, *own, *(f"@{d}" for d in sorted(names[login]))]))
    return "\n".join(lines) + "\n"


def _site_logins(server) -> list[tuple[str, list[str]]]:
    """(Linux user, its live sites' names) of each system account of ``server``."""
    from websites.models import SystemAccount, Website

    accounts = dict(SystemAccount.objects.filter(server=server).values_list("user_id", "name"))
    out = []
    sites = (
        Website.objects.filter(server=server, owner_id__in=list(accounts))
        .exclude(status=Website.Status.DELETING)
        .values_list("owner_id", "domain", "aliases")
    )
    for owner_id, domain, aliases in sites:
        out.append((accounts[owner_id], [domain, *aliases.split()]))
    return out


def render_sender_logins(senders: str) -> str:
    """OpenDKIM's view of the senders map (mail/conf/panel-setup.lua): one ``login>address``
    key a line (``login>@domain`` for a catch-all), the header From a login may sign as."""
    lines = [HEADER.rstrip("\n")]
    for line in senders.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        address, owners = line.split(" ", 1)
        lines.extend(f"{login}>{address}" for login in owners.split(","))
    return "\n".join(lines) + "\n"


def _sieve_string(text: str) -> str:
    """A Sieve quoted string (RFC 5228): backslash and double quote escaped, one line."""
    text = "".join(c for c in text if c.isprintable())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_vacation(box: Mailbox) -> str:
    """The mailbox's auto-responder (Pigeonhole's vacation): at most one reply a day to each
    sender. The body is a multi-line string (``text:``, lines starting "." doubled)."""
    body = []
    for line in (box.autoreply_body or "").replace("\r\n", "\n").split("\n"):
        line = "".join(c for c in line if c.isprintable() or c == "\t")
        body.append("." + line if line.startswith(".") else line)
    subject = _sieve_string(box.autoreply_subject or "Automatic reply")
    vacation = f"vacation :days 1 :subject {subject} text:\n" + "\n".join(body) + "\n.\n;\n"
    # The window (both days included) by the server's clock: RFC 5260's currentdate.
    bounds = [
        f'currentdate :value "{op}" "date" "{day.isoformat()}"'
        for op, day in (("ge", box.autoreply_start), ("le", box.autoreply_end))
        if day is not None
    ]
    header = "# Managed by the hosting panel: the mailbox's auto-responder.\n"
    if not bounds:
        return header + 'require ["vacation"];\n' + vacation
    return (
        header
        + 'require ["vacation", "date", "relational"];\n'
        + f"if allof ({', '.join(bounds)}) {{\n{vacation}}}\n"
    )


def render_policy(domains: list[MailDomain], boxes: list[Mailbox]) -> str:
    """The policy service's rules (mail/conf/panel-policy.py): each live domain's sender
    allow/deny lists and each live mailbox's hourly sending limit."""
    live = {d.pk: d for d in domains if not d.suspended and DOMAIN.fullmatch(d.domain)}
    rules: dict = {"domains": {}, "limits": {}}
    for d in sorted(live.values(), key=lambda d: d.domain):
        allow, deny = spam_list(d.spam_allow), spam_list(d.spam_deny)
        if allow or deny:
            rules["domains"][d.domain] = {"allow": allow, "deny": deny}
    for box in boxes:
        d = live.get(box.domain_id)
        if d is not None and box.send_limit_per_hour and LOCAL_PART.fullmatch(box.local_part):
            rules["limits"][f"{box.local_part}@{d.domain}"] = int(box.send_limit_per_hour)
    return json.dumps(rules, sort_keys=True, indent=1) + "\n"


class MailFiles:
    unit_prefix = "mail"  # maildomain:<uuid> and mail:maps
    profile_keys = ()

    def files(self, server, profile, units):
        domains = list(MailDomain.objects.filter(server=server).order_by("domain"))
        wanted = None
        if units is not None:
            wanted = {u for u in units if u.startswith("maildomain:")}
        users_dir = _checked_path(profile.dovecot_users_dir, "dovecot_users_dir")
        sieve_dir = _checked_path(profile.dovecot_sieve_dir, "dovecot_sieve_dir")
        vmail = _checked_path(profile.vmail_base, "vmail_base")
        group = profile.dovecot_group
        needed = [d for d in domains if wanted is None or d.unit in wanted]
        # The maps (and OpenDKIM's tables) belong on a mail server only: one that has mail
        # domains, or had them (its maps stay, emptied, so Postfix keeps reading them).
        is_prepared = config.configured(server)
        maps = (units is None or MAPS_UNIT in units) and (
            bool(domains)
            or is_prepared
            or AppliedFile.objects.filter(server=server, unit=MAPS_UNIT).exists()
        )
        if is_prepared and (units is None or CONFIG_UNIT in units):
            try:
                rendered = config.render_config(server, profile)
            except (config.ConfigError, ValueError) as exc:
                yield UnitFailed(CONFIG_UNIT, f"Not rendered: {exc}")
            else:
                for path, (service, text) in rendered.items():
                    yield ManagedFile(
                        path=path, content=text.encode(), service=service, unit=CONFIG_UNIT
                    )
        boxes = list(
            Mailbox.objects.filter(domain__in=domains if maps else needed)
            .only(
                "domain_id",
                "local_part",
                "password_hash",
                "quota_mb",
                "suspended",
                "billing_hold",
                "send_limit_per_hour",
                "autoreply",
                "autoreply_subject",
                "autoreply_body",
                "autoreply_start",
                "autoreply_end",
            )
            .order_by("domain_id", "local_part")
        )
        by_domain: dict[int, list[Mailbox]] = {}
        for box in boxes:
            by_domain.setdefault(box.domain_id, []).append(box)
        key_dir = _checked_path(profile.opendkim_key_dir, "opendkim_key_dir")
        dkim_user = profile.opendkim_user
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", dkim_user):
            dkim_user = "root"
        for d in needed:
            try:
                text = render_users(d, by_domain.get(d.pk, []), vmail)
                key = d.dkim_private_key
                if key and not dkim.PEM.fullmatch(key):
                    raise ValueError("its DKIM key is not a private key")
            except ValueError as exc:
                yield UnitFailed(d.unit, f"Not rendered: {exc}")
                continue
            if key:
                yield ManagedFile(
                    path=f"{key_dir}/{d.domain}.private",
                    content=key.encode(),
                    service="opendkim",
                    unit=d.unit,
                    mode=0o600,
                    owner=dkim_user,
                    group=dkim_user,
                )
            for box in by_domain.get(d.pk, []):
                if box.autoreply and not box.refused and LOCAL_PART.fullmatch(box.local_part):
                    yield ManagedFile(
                        path=f"{sieve_dir}/{box.local_part}@{d.domain}.sieve",
                        content=render_vacation(box).encode(),
                        service="dovecot",
                        unit=d.unit,
                    )
            yield ManagedFile(
                path=f"{users_dir}/{d.domain}",
                content=text.encode(),
                service="dovecot",
                unit=d.unit,
                mode=0o640,
                group=group if re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", group) else "root",
            )
        if maps:
            map_dir = _checked_path(profile.mail_map_dir, "mail_map_dir")
            aliases = list(
                MailAlias.objects.filter(domain__in=domains).order_by("domain_id", "local_part")
            )
            rendered = render_maps(domains, boxes, aliases)
            rendered["local_senders"] = render_local_senders(
                config.hostname_of(server, profile),
                ["root", profile.vmail_user],
                _site_logins(server),
            )
            for name, text in rendered.items():
                yield ManagedFile(
                    path=f"{map_dir}/{name}",
                    content=text.encode(),
                    service="postfix",
                    unit=MAPS_UNIT,
                )
            yield ManagedFile(
                path=f"{map_dir}/policy.json",
                content=render_policy(domains, boxes).encode(),
                service="postfix",
                unit=MAPS_UNIT,
            )
            signing = [
                (d.domain, d.dkim_selector)
                for d in domains
                if d.dkim_private_key and not d.suspended and DOMAIN.fullmatch(d.domain)
            ]
            dkim_dir = _checked_path(profile.opendkim_dir, "opendkim_dir")
            tables = dkim.render_tables(signing, key_dir)
            tables[config.SENDER_LOGINS] = render_sender_logins(rendered["senders"])
            for name, text in tables.items():
                yield ManagedFile(
                    path=f"{dkim_dir}/{name}",
                    content=text.encode(),
                    service="opendkim",
                    unit=MAPS_UNIT,
                )

    def report(self, server, ok: set[str], failed: dict[str, str]) -> None:
        """Statuses in bulk: a domain (and its mailboxes) is active when its users file and
        the maps it is in are live; a failure of the maps fails every domain."""
        domains = MailDomain.objects.filter(server=server)
        maps_error = failed.get(MAPS_UNIT)
        if maps_error:
            domains.update(status=Status.FAILED, status_message=maps_error[:4000])
            Mailbox.objects.filter(domain__server=server).update(
                status=Status.FAILED, status_message=maps_error[:4000]
            )
            return
        ids = sorted(u.removeprefix("maildomain:") for u in ok if u.startswith("maildomain:"))
        if MAPS_UNIT in ok:  # every domain's map lines are live
            ids = sorted(set(ids) | {str(u) for u in domains.values_list("uuid", flat=True)})
        for unit, message in failed.items():
            if unit.startswith("maildomain:"):
                uuid = unit.removeprefix("maildomain:")
                ids = [i for i in ids if i != uuid]
                domains.filter(uuid=uuid).update(
                    status=Status.FAILED, status_message=message[:4000]
                )
                Mailbox.objects.filter(domain__uuid=uuid).update(
                    status=Status.FAILED, status_message=message[:4000]
                )
        for i in range(0, len(ids), CHUNK):
            chunk = domains.filter(uuid__in=ids[i : i + CHUNK])
            for suspended, status in ((False, Status.ACTIVE), (True, Status.SUSPENDED)):
                chunk.filter(suspended=suspended).exclude(status=status, status_message="").update(
                    status=status, status_message=""
                )
            boxes = Mailbox.objects.filter(domain__in=chunk)
            boxes.filter(suspended=False, billing_hold=False, domain__suspended=False).exclude(
                status=Status.ACTIVE, status_message=""
            ).update(status=Status.ACTIVE, status_message="")
            boxes.filter(
                Q(suspended=True) | Q(billing_hold=True) | Q(domain__suspended=True)
            ).exclude(status=Status.SUSPENDED).update(status=Status.SUSPENDED, status_message="")
