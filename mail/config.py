"""The mail programs' own configuration, rendered from mail/conf/ into the unit ``mail:config``
of a server prepared for mail (``Server.components["mail"]``, set by mail/prepare.py).

- Postfix: ``main.cf`` and ``master.cf`` in ``postfix_config_dir`` (SMTP on ``smtp_listen``
  with STARTTLS offered, submission on ``submission_listen`` with TLS required and SASL
  through Dovecot's auth socket, relaying only for ``mail_mynetworks`` and authenticated
  users, mail for the panel's domains to Dovecot over LMTP, OpenDKIM as milter).
- Dovecot: ``dovecot_conf`` (IMAP with TLS required before a login, LMTP, ManageSieve, the
  quota and sieve plugins, the panel's passwd-files).
- OpenDKIM: ``opendkim_conf``.

Each value from the profile is checked here against a strict pattern (the profile's own
kinds are looser): a value that could change the files' meaning fails the unit instead.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from mail.models import CONFIG_UNIT
from websites.validators import DOMAIN

HERE = Path(__file__).parent / "conf"
FILES = ("main.cf", "master.cf", "dovecot.conf", "opendkim.conf")
TEMPLATES = {name: (HERE / name).read_text() for name in FILES}
POLICY_SCRIPT = (HERE / "panel-policy.py").read_text()
DKIM_HOOKS = ("panel-setup.lua", "panel-final.lua")  # OpenDKIM's SetupPolicyScript, Final...
HOOKS = {name: (HERE / name).read_text() for name in DKIM_HOOKS}
SENDER_LOGINS = "SenderLogins"  # in opendkim_dir, unit mail:maps (mail/apply.py)
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]{0,200}")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
LISTEN = re.compile(r"((\d{1,3}\.){3}\d{1,3}:)?(\d{1,5})")
DKIM_SOCKET = re.compile(r"inet:(\d{1,5})@(\d{1,3}(\.\d{1,3}){3})")
SNAKEOIL = ("/etc/ssl/certs/ssl-cert-snakeoil.pem", "/etc/ssl/private/ssl-cert-snakeoil.key")


class ConfigError(ValueError):
    """A profile value the configuration cannot take (the unit fails with this text)."""


def render(template: str, **values: str) -> str:
    def one(match: re.Match) -> str:
        value = values[match.group(1)]
        if "\n" in value and not match.group(1).endswith("_lines"):
            raise ConfigError(f"{match.group(1)} holds a line break")
        return value

    return PLACEHOLDER.sub(one, template)


def _path(profile, key: str) -> str:
    value = str(getattr(profile, key))
    if not SAFE_PATH.fullmatch(value) or "/../" in f"{value}/":
        raise ConfigError(f"{key} {value!r} is not a plain absolute path")
    return value.rstrip("/") or "/"


def _listen(profile, key: str) -> tuple[str, int]:
    """(address or "", port) of a ``listen`` key."""
    m = LISTEN.fullmatch(str(getattr(profile, key)))
    if not m or not 1 <= int(m.group(3)) <= 65535:
        raise ConfigError(f"{key} {getattr(profile, key)!r} is not a port or address:port")
    address = (m.group(1) or "").rstrip(":")
    if address:
        ipaddress.IPv4Address(address)
    return address, int(m.group(3))


def _addresses(profile) -> list[str]:
    """The addresses the programs listen on (empty: all)."""
    value = str(profile.mail_listen_addresses).strip()
    if value in ("", "all"):
        return []
    out = []
    for word in value.replace(",", " ").split():
        try:
            out.append(str(ipaddress.ip_address(word)))
        except ValueError:
            raise ConfigError(f"mail_listen_addresses: {word!r} is not an address") from None
    return out


def _networks(profile) -> str:
    out = []
    for word in str(profile.mail_mynetworks).replace(",", " ").split():
        try:
            net = ipaddress.ip_network(word, strict=False)
        except ValueError:
            raise ConfigError(f"mail_mynetworks: {word!r} is not a network") from None
        out.append(f"[{net.network_address}]/{net.prefixlen}" if net.version == 6 else str(net))
    return " ".join(out)


def _user(profile, key: str) -> str:
    value = str(getattr(profile, key))
    if not USER.fullmatch(value):
        raise ConfigError(f"{key} {value!r} is not a user name")
    return value


def hostname_of(server, profile) -> str:
    """The name the server answers as (HELO, certificate): the profile's mail_hostname, the
    server's address when it is a name, else its host name from the facts."""
    for candidate in (profile.mail_hostname, server.address, (server.facts or {}).get("hostname")):
        value = str(candidate or "").strip().lower().rstrip(".")
        if value and DOMAIN.fullmatch(value) and not _is_ip(value) and "." in value:
            return value
    return "localhost.localdomain"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def tls_files(server, profile, hostname: str) -> tuple[str, str]:
    """The certificate (chain) and key the programs use: the profile's when set; else the
    panel's certificate of the website named like the mail host once it is installed on
    this server; else Debian's self-signed one (ssl-cert)."""
    if profile.mail_tls_cert and profile.mail_tls_key:
        return _path(profile, "mail_tls_cert"), _path(profile, "mail_tls_key")
    from websites.certificates.apply import file_paths
    from websites.certificates.models import Certificate

    if Certificate.objects.filter(
        website__server=server, website__domain=hostname, installed=True
    ).exists():
        key, crt = file_paths(profile, hostname)
        return crt, key
    return SNAKEOIL


def _submission_host(profile) -> str:
    """Where Dovecot sends auto-replies: an SMTP host:port, else the sendmail binary."""
    value = str(profile.dovecot_submission_host)
    if not value:
        return ""
    address, port = _listen(profile, "dovecot_submission_host")
    if not address:
        raise ConfigError("dovecot_submission_host must be address:port")
    return f"submission_host = {address}:{port}"


def _setup(server) -> dict:
    components = server.components or {}
    return components.get("mail") or components.get(PREPARING) or {}


def render_config(server, profile) -> dict[str, tuple[str, str]]:
    """path -> (service, content) of the unit ``mail:config``. Raises ConfigError."""
    hostname = hostname_of(server, profile)
    cert, key = tls_files(server, profile, hostname)
    addresses = _addresses(profile)
    smtp_addr, smtp_port = _listen(profile, "smtp_listen")
    sub_addr, sub_port = _listen(profile, "submission_listen")
    _imap_addr, imap_port = _listen(profile, "imap_listen")
    _sieve_addr, sieve_port = _listen(profile, "managesieve_listen")
    lmtp = _path(profile, "dovecot_lmtp_socket")
    auth = _path(profile, "dovecot_auth_socket")
    dkim_socket = str(profile.opendkim_socket)
    m = DKIM_SOCKET.fullmatch(dkim_socket)
    if not m:
        raise ConfigError(f"opendkim_socket {dkim_socket!r} is not inet:PORT@ADDRESS")
    ipaddress.IPv4Address(m.group(2))
    log_file = str(profile.postfix_log_file)
    transport = str(profile.postfix_transport_map)
    postfix_conf = _path(profile, "postfix_config_dir")
    main = render(
        TEMPLATES["main.cf"],
        queue_dir=_path(profile, "postfix_queue_dir"),
        data_dir=_path(profile, "postfix_data_dir"),
        log_lines=(
            f"maillog_file = {_path(profile, 'postfix_log_file')}\n"
            f"maillog_file_prefixes = {_path(profile, 'postfix_log_file').rsplit('/', 1)[0]}"
            if log_file
            else ""
        ),
        hostname=hostname,
        inet_interfaces=", ".join(addresses) if addresses else "all",
        inet_protocols="ipv4" if addresses and all(":" not in a for a in addresses) else "all",
        mynetworks=_networks(profile),
        map_dir=_path(profile, "mail_map_dir"),
        lmtp_socket=lmtp,
        transport_line=(
            f"transport_maps = hash:{_path(profile, 'postfix_transport_map')}" if transport else ""
        ),
        tls_cert=cert,
        tls_key=key,
        auth_socket=auth,
        milter=f"inet:{m.group(2)}:{m.group(1)}",
        vmail_user=_user(profile, "vmail_user"),
    )
    master = render(
        TEMPLATES["master.cf"],
        smtp_listen=f"{smtp_addr}:{smtp_port}" if smtp_addr else str(smtp_port),
        submission_listen=f"{sub_addr}:{sub_port}" if sub_addr else str(sub_port),
        policy_script=f"{postfix_conf}/panel-policy.py",
        policy_rules=f"{_path(profile, 'mail_map_dir')}/policy.json",
        policy_state=_path(profile, "mail_policy_state_dir"),
    )
    dovecot_log = str(profile.dovecot_log_path)
    vmail_user = _user(profile, "vmail_user")
    dovecot = render(
        TEMPLATES["dovecot.conf"],
        base_dir=_path(profile, "dovecot_base_dir"),
        state_dir=_path(profile, "dovecot_state_dir"),
        log_lines=f"log_path = {_path(profile, 'dovecot_log_path')}" if dovecot_log else "",
        listen=", ".join(addresses) if addresses else "*, ::",
        tls_cert=cert,
        tls_key=key,
        first_valid_uid=str(int(_setup(server).get("vmail_uid", 500))),
        vmail_user=vmail_user,
        users_dir=_path(profile, "dovecot_users_dir"),
        hostname=hostname,
        imap_port=str(imap_port),
        sieve_port=str(sieve_port),
        lmtp_socket=lmtp,
        auth_socket=auth,
        postfix_user="postfix",
        sieve_dir=_path(profile, "dovecot_sieve_dir"),
        submission_lines=_submission_host(profile),
    )
    dkim_dir = _path(profile, "opendkim_dir")
    opendkim = render(
        TEMPLATES["opendkim.conf"],
        syslog="yes",
        socket=dkim_socket,
        pid_file=_path(profile, "opendkim_pid_file"),
        user=_user(profile, "opendkim_user"),
        dkim_dir=dkim_dir,
        # OpenDKIM refuses keys below a group- or world-writable directory unless told;
        # a server keeps them in /etc/opendkim/keys, a test instance below /tmp.
        safe_keys="false" if str(profile.opendkim_safe_keys) == "no" else "true",
    )
    hooks = {
        f"{dkim_dir}/{name}": (
            "opendkim",
            render(
                text,
                senders=f"{dkim_dir}/{SENDER_LOGINS}",
                hostname=hostname,
                vmail_user=vmail_user,
            ),
        )
        for name, text in HOOKS.items()
    }
    return {
        **hooks,
        f"{postfix_conf}/panel-policy.py": ("postfix", POLICY_SCRIPT),
        f"{postfix_conf}/main.cf": ("postfix", main),
        f"{postfix_conf}/master.cf": ("postfix", master),
        _path(profile, "dovecot_conf"): ("dovecot", dovecot),
        _path(profile, "opendkim_conf"): ("opendkim", opendkim),
    }


PREPARING = "mail_preparing"


def prepared(server) -> bool:
    """Prepared for mail: its configuration was applied (mail/prepare.py)."""
    return bool((server.components or {}).get("mail"))


def configured(server) -> bool:
    """mail:config is rendered: prepared, or being prepared (the first apply runs)."""
    return prepared(server) or bool((server.components or {}).get(PREPARING))


__all__ = ["CONFIG_UNIT", "ConfigError", "prepared", "render_config"]
