"""A private mail stack for tests and bench/mail.py: Postfix (``postfix -c DIR``, its own
queue and data directories, SMTP on a free loopback port), Dovecot (``dovecot -c conf``, IMAP
on a free port, LMTP on a socket Postfix delivers to) and OpenDKIM (``opendkim -x conf``, a
milter of Postfix), configured as a server prepared for mail is (docs/mail.md), pointing at
the panel's (empty) maps, users and key tables; stopped by command and pid on exit."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.integration.conftest import (
    free_port,
    need,
    stop_pidfile,
    wait_port,
    world_readable_tmp,
)

FOREIGN = "elsewhere.test"  # a foreign domain, routed to the caller's SMTP catcher


def ensure_vmail() -> tuple[int, int]:
    """The system user that owns the maildirs (as a mail server has it)."""
    try:
        entry = pwd.getpwnam("vmail")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell",
             "/usr/sbin/nologin", "vmail"],
            check=True,
        )  # fmt: skip
        entry = pwd.getpwnam("vmail")
    return entry.pw_uid, entry.pw_gid


def sh(*argv: str) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if res.returncode:
        raise RuntimeError(f"{argv}: {res.stdout}{res.stderr}")
    return res.stdout


@contextlib.contextmanager
def mail_stack(foreign_port: int) -> Iterator[dict]:
    """Postfix + Dovecot as a server prepared for mail has them, pointing at the panel's
    maps and users directories (empty until the first apply)."""
    for program in ("postfix", "postmap", "dovecot", "doveadm", "doveconf"):
        need(program)
    uid, gid = ensure_vmail()
    base = world_readable_tmp("uhp-mail-")
    conf, users, vmail = base / "postfix", base / "users", base / "vmail"
    dkim_dir = base / "opendkim"
    for d in (conf, conf / "panel", users, base / "queue", base / "data", base / "run"):
        d.mkdir(parents=True)
    (dkim_dir / "keys").mkdir(parents=True)
    for name in ("KeyTable", "SigningTable"):
        (dkim_dir / name).write_text("")
    milter_port = free_port()
    # RequireSafeKeys: OpenDKIM refuses keys below a world-writable directory, and this
    # private instance lives below /tmp (a server keeps them in /etc/opendkim/keys).
    (base / "opendkim.conf").write_text(
        f"""Syslog no
Mode sv
Canonicalization relaxed/simple
Socket inet:{milter_port}@127.0.0.1
PidFile {base}/opendkim.pid
UserID opendkim
KeyTable {dkim_dir}/KeyTable
SigningTable refile:{dkim_dir}/SigningTable
InternalHosts 127.0.0.1
RequireSafeKeys false
"""
    )
    vmail.mkdir()
    os.chown(vmail, uid, gid)
    shutil.chown(base / "data", "postfix")
    smtp_port, imap_port = free_port(), free_port()
    lmtp = base / "lmtp"
    (conf / "transport").write_text(f"{FOREIGN} smtp:[127.0.0.1]:{foreign_port}\n")
    sh("postmap", f"hash:{conf}/transport")
    for name in ("domains", "mailboxes", "aliases"):  # what "prepare" leaves before an apply
        (conf / "panel" / name).write_text("")
        sh("postmap", f"hash:{conf}/panel/{name}")
    (conf / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file = {base}/postfix.log
maillog_file_prefixes = {base}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.panel.test
mydestination =
mynetworks = 192.0.2.1/32
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination
smtp_dns_support_level = disabled
virtual_mailbox_domains = hash:{conf}/panel/domains
virtual_mailbox_maps = hash:{conf}/panel/mailboxes
virtual_alias_maps = hash:{conf}/panel/aliases
virtual_transport = lmtp:unix:{lmtp}
transport_maps = hash:{conf}/transport
smtpd_milters = inet:127.0.0.1:{milter_port}
non_smtpd_milters = $smtpd_milters
"""
    )
    master = Path("/etc/postfix/master.cf").read_text()
    lines = []
    for line in master.splitlines():
        fields = line.split()
        if fields[:2] == ["smtp", "inet"]:
            line = line.replace("smtp      inet", f"127.0.0.1:{smtp_port} inet", 1)
            fields = line.split()
        if len(fields) >= 8 and not line.startswith((" ", "#")) and fields[4] == "y":
            fields[4] = "n"  # no chroot: the private instance's paths are not in one
            line = " ".join(fields)
        lines.append(line)
    (conf / "master.cf").write_text("\n".join(lines) + "\n")
    dconf = base / "dovecot.conf"
    dconf.write_text(
        f"""base_dir = {base}/run
state_dir = {base}/run
log_path = {base}/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = {uid}
mail_uid = vmail
mail_gid = vmail
mail_location = maildir:~/Maildir
auth_username_chars = abcdefghijklmnopqrstuvwxyz01234567890.-_@
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%Lu {users}/%Ld
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {users}/%Ld
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener {lmtp} {{
    user = postfix
    group = postfix
    mode = 0600
  }}
}}
"""
    )
    sh("postfix", "-c", str(conf), "check")
    try:
        subprocess.run(
            [need("opendkim"), "-x", str(base / "opendkim.conf")], check=True, timeout=60,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port("127.0.0.1", milter_port)
        sh("postfix", "-c", str(conf), "start")
        # dovecot daemonizes: its children must not hold our pipes open.
        subprocess.run(
            ["dovecot", "-c", str(dconf)], check=True, timeout=60,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port("127.0.0.1", smtp_port)
        wait_port("127.0.0.1", imap_port)
        yield _stack(base, conf, dconf, users, vmail, smtp_port, imap_port)
    finally:
        stop_pidfile(base / "opendkim.pid")
        for argv in (["postfix", "-c", str(conf), "stop"], ["doveadm", "-c", str(dconf), "stop"]):
            with contextlib.suppress(Exception):
                subprocess.run(
                    argv, timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
        shutil.rmtree(base, ignore_errors=True)


def _stack(base, conf, dconf, users, vmail, smtp_port, imap_port) -> dict:
    return {
        "base": base,
        "conf": conf,
        "dovecot_conf": dconf,
        "users": users,
        "vmail": vmail,
        "smtp_port": smtp_port,
        "imap_port": imap_port,
        "profile": {
            "state_dir": str(base / "state"),
            "postfix_config_dir": str(conf),
            "mail_map_dir": str(conf / "panel"),
            "dovecot_conf": str(dconf),
            "dovecot_users_dir": str(users),
            "vmail_base": str(vmail),
            "opendkim_conf": str(base / "opendkim.conf"),
            "opendkim_dir": str(base / "opendkim"),
            "opendkim_key_dir": str(base / "opendkim" / "keys"),
            "opendkim_pid_file": str(base / "opendkim.pid"),
        },
    }


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate and key for ``name`` (openssl), standing in for the panel's."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
       "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
       "-keyout", str(key), "-out", str(crt))  # fmt: skip
    key.chmod(0o600)
    return crt, key


@contextlib.contextmanager
def prepared_paths(foreign_port: int) -> Iterator[dict]:
    """Directories and ports for a stack that "Prepare for mail" configures and starts
    (nothing is written or started here but a TLS key and the foreign domain's route); the
    programs are stopped by command and pid on exit, whoever started them."""
    for program in ("postfix", "postmap", "dovecot", "doveadm", "doveconf", "opendkim"):
        need(program)
    base = world_readable_tmp("uhp-mailprep-")
    conf = base / "postfix"
    conf.mkdir()
    (base / "tls").mkdir(mode=0o700)
    crt, key = self_signed(base / "tls", "mx.panel.test")
    (conf / "transport").write_text(f"{FOREIGN} smtp:[127.0.0.1]:{foreign_port}\n")
    sh("postmap", f"hash:{conf}/transport")
    ports = {k: free_port() for k in ("smtp", "submission", "imap", "sieve", "milter")}
    profile = {
        "state_dir": str(base / "state"),
        "mail_hostname": "mx.panel.test",
        "postfix_config_dir": str(conf),
        "mail_map_dir": str(conf / "panel"),
        "postfix_queue_dir": str(base / "queue"),
        "postfix_data_dir": str(base / "data"),
        "postfix_log_file": str(base / "postfix.log"),
        "postfix_transport_map": str(conf / "transport"),
        "mail_listen_addresses": "127.0.0.1",
        "mail_mynetworks": "127.0.0.1/32",  # Dovecot's auto-replies; clients use 127.0.0.3
        "dovecot_submission_host": f"127.0.0.1:{ports['smtp']}",
        "dovecot_sieve_dir": str(base / "sieve"),
        "mail_policy_state_dir": str(base / "policy"),
        "smtp_listen": f"127.0.0.1:{ports['smtp']}",
        "submission_listen": f"127.0.0.1:{ports['submission']}",
        "imap_listen": str(ports["imap"]),
        "managesieve_listen": str(ports["sieve"]),
        "mail_tls_cert": str(crt),
        "mail_tls_key": str(key),
        "dovecot_conf": str(base / "dovecot" / "dovecot.conf"),
        "dovecot_users_dir": str(base / "users"),
        "dovecot_base_dir": str(base / "run"),
        "dovecot_state_dir": str(base / "dstate"),
        "dovecot_log_path": str(base / "dovecot.log"),
        "dovecot_lmtp_socket": str(base / "lmtp"),
        "dovecot_auth_socket": str(base / "auth"),
        "vmail_base": str(base / "vmail"),
        "opendkim_conf": str(base / "opendkim.conf"),
        "opendkim_dir": str(base / "opendkim"),
        "opendkim_key_dir": str(base / "opendkim" / "keys"),
        "opendkim_pid_file": str(base / "opendkim.pid"),
        "opendkim_socket": f"inet:{ports['milter']}@127.0.0.1",
        "opendkim_safe_keys": "no",
    }
    (base / "dovecot").mkdir()
    (base / "dstate").mkdir()
    try:
        yield {"base": base, "conf": conf, "ports": ports, "profile": profile, "cert": crt}
    finally:
        stop_pidfile(base / "opendkim.pid")
        stop_pidfile(base / "run" / "master.pid")  # Dovecot, even if its file is gone
        for argv in (
            ["postfix", "-c", str(conf), "stop"],
            ["doveadm", "-c", profile["dovecot_conf"], "stop"],
        ):
            with contextlib.suppress(Exception):
                subprocess.run(
                    argv, timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
        shutil.rmtree(base, ignore_errors=True)
