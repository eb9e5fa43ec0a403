"""A private mail stack for tests and bench/mail.py: Postfix (``postfix -c DIR``, its own
queue and data directories, SMTP and submission on free loopback ports), Dovecot (``dovecot
-c conf``, IMAP on a free port, LMTP on a socket Postfix delivers to) and OpenDKIM
(``opendkim -x conf``, a milter of Postfix), their configuration rendered by mail.config
as "Prepare for mail" writes it (docs/mail.md), pointing at the panel's (empty) maps, users
and key tables; stopped by command and pid on exit."""

from __future__ import annotations

import contextlib
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
    """Postfix, Dovecot and OpenDKIM configured as "Prepare for mail" configures them: the
    files rendered by mail.config from the panel's templates, the directories made by
    mail.prepare.make_directories (over a local transport), the programs started by their
    own commands; the maps and users (empty until the first apply) are the apply engine's.
    Only ``mail_mynetworks`` differs from the prepare test's profile (192.0.2.1/32): a
    client on 127.0.0.1 relays nothing unauthenticated, as any client on the internet."""
    from mail import config, prepare
    from servers.engine import profile_for
    from servers.models import Server
    from servers.transport import LocalTransport

    with prepared_paths(foreign_port) as found:
        uid, _gid = ensure_vmail()
        values = {**found["profile"], "mail_mynetworks": "192.0.2.1/32"}
        server = Server(name="mail-stack", address="127.0.0.1", profile=values,
                        components={"mail": {"vmail_uid": uid}})  # fmt: skip
        profile = profile_for(server)
        t = LocalTransport()
        prepare.make_directories(t, profile)
        for path, (_service, text) in config.render_config(server, profile).items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        maps = Path(values["mail_map_dir"])
        for name in ("domains", "mailboxes", "aliases", "senders"):  # before the first apply
            (maps / name).write_text("")
            sh("postmap", f"hash:{maps / name}")
        conf, ports = found["conf"], found["ports"]
        dconf = values["dovecot_conf"]
        sh("postfix", "-c", str(conf), "check")
        # The programs daemonize: their children must not hold our pipes open.
        quiet = {"check": True, "timeout": 60, "stdout": subprocess.DEVNULL,
                 "stderr": subprocess.DEVNULL}  # fmt: skip
        subprocess.run([need("opendkim"), "-x", values["opendkim_conf"]], **quiet)
        wait_port("127.0.0.1", ports["milter"])
        subprocess.run(["dovecot", "-c", dconf], **quiet)
        sh("postfix", "-c", str(conf), "start")
        for port in (ports["smtp"], ports["submission"], ports["imap"]):
            wait_port("127.0.0.1", port)
        yield {
            "base": found["base"],
            "conf": conf,
            "dovecot_conf": Path(dconf),
            "users": Path(values["dovecot_users_dir"]),
            "vmail": Path(values["vmail_base"]),
            "smtp_port": ports["smtp"],
            "submission_port": ports["submission"],
            "imap_port": ports["imap"],
            "profile": values,
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
