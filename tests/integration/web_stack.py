"""A private web server for website tests: sshd (root for the panel, and the customers'
SFTP through a managed Match directory), nginx, and the homes of system accounts, all on a
loopback address of the test's choosing. Each test module picks its own address and
account name, so modules running in parallel never share a Linux user or a port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from servers.models import Server
from servers.transport import generate_keypair
from tests.integration.conftest import (
    free_port,
    need,
    start_nginx,
    stop_pidfile,
    wait_port,
    world_readable_tmp,
)


def drop_user(name: str) -> None:
    subprocess.run(["userdel", "-f", name], capture_output=True, check=False)
    subprocess.run(["groupdel", name], capture_output=True, check=False)


class WebStack:
    def __init__(self, host: str, account: str, *, php: bool = False) -> None:
        self.host, self.account = host, account
        self.php: Path | None = None
        sshd_bin = need("sshd")
        need("useradd")
        drop_user(account)
        self.base = base = world_readable_tmp("uhp-web-")
        # Homes are SFTP chroots: every component root-owned, not writable by others (/tmp
        # is).
        self.homes = Path(tempfile.mkdtemp(prefix="uhp-homes-", dir="/var/lib"))
        self.homes.chmod(0o755)
        self.private, self.public = generate_keypair("panel-tests")
        (base / "root-home").mkdir()
        (base / "authorized_keys").write_text(
            f'environment="HOME={base}/root-home" {self.public}\n'
        )
        (base / "sshd.d").mkdir()
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")],
            check=True,
        )
        self.ssh_port = free_port(host)
        (base / "sshd_config").write_text(
            f"Include {base}/sshd.d/*.conf\n"
            f"Port {self.ssh_port}\nListenAddress {host}\nHostKey {base}/host_key\n"
            f"PidFile {base}/sshd.pid\nAuthorizedKeysFile {base}/authorized_keys\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 100\n"
            "PermitUserEnvironment yes\n"
        )
        os.makedirs("/run/sshd", exist_ok=True)
        subprocess.run(
            [sshd_bin, "-f", str(base / "sshd_config"), "-E", str(base / "sshd.log")], check=True
        )
        wait_port(host, self.ssh_port)
        (base / "nginx").mkdir()
        self.nginx = start_nginx(base / "nginx")
        self.profile = {
            **self.nginx.profile(),
            "state_dir": str(base / "state"),
            "webroot_base": str(self.homes),
            "tls_dir": str(base / "tls"),
            "acme_challenge_dir": str(base / "acme"),
            "nginx_resolver": "127.0.0.1",
            "nginx_default_server": "panel",
            "sshd_conf": str(base / "sshd_config"),
            "sshd_dir": str(base / "sshd.d"),
            "sshd_test": [sshd_bin, "-t", "-f", "{conf}"],
            "sshd_pid_file": str(base / "sshd.pid"),
        }
        if php:
            self._start_php()

    def _start_php(self) -> None:
        """A private php-fpm 8.2 master with a pool of its own, so that it runs while no
        site has one; the engine writes the sites' pools into its pool directory."""
        php_bin = need("php-fpm8.2")
        self.php = php = self.base / "php"
        (php / "pool.d").mkdir(parents=True)
        (php / "run").mkdir()
        (php / "pool.d" / "base.conf").write_text(
            f"[base]\nuser = nobody\ngroup = nogroup\nlisten = {php}/run/base.sock\n"
            "pm = static\npm.max_children = 1\n"
        )
        (php / "php-fpm.conf").write_text(
            f"[global]\npid = {php}/php-fpm.pid\nerror_log = {php}/error.log\n"
            f"daemonize = yes\ninclude={php}/pool.d/*.conf\n"
        )
        for p in (php, php / "run", php / "pool.d"):
            p.chmod(0o755)
        subprocess.run([php_bin, "-y", str(php / "php-fpm.conf")], check=True)
        self.profile.update(
            {
                "php_conf": str(php / "php-fpm.conf"),
                "php_pool_dir": str(php / "pool.d"),
                "php_pid_file": str(php / "php-fpm.pid"),
                "php_socket_dir": str(php / "run"),
                "php_listen_owner": "nobody",
            }
        )

    def server(self, owner, name: str = "web-stack", **extra) -> Server:
        return Server.objects.create(
            name=name,
            address=self.host,
            ssh_port=self.ssh_port,
            ssh_user="root",
            owner=owner,
            private_key=self.private,
            public_key=self.public,
            profile=dict(self.profile),
            **extra,
        )

    def stop(self) -> None:
        if self.php is not None:
            stop_pidfile(self.php / "php-fpm.pid")
        stop_pidfile(self.nginx.prefix / "nginx.pid")
        stop_pidfile(self.base / "sshd.pid")
        drop_user(self.account)
        time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.homes, ignore_errors=True)
