"""PHP-FPM for the apply engine: one service per PHP version (``php-fpm8.2``), pools in its
pool directory, validated with ``php-fpm -t``, reloaded by USR2 to the master and verified
by every changed pool's socket taking connections."""

from __future__ import annotations

import re
from pathlib import Path

from servers.engine import ApplyError, IncludeDirService, ProfileKey, ServiceRun, Step, fill
from servers.engine.profile import Profile

# USR2 to the master, then wait until it is alive again and every socket passed as an
# argument accepts a connection (curl's exit 7 means nothing listens). Constant text.
RELOAD_SCRIPT = Path(__file__).with_name("php_reload.sh").read_text()
LISTEN = re.compile(rb"^\s*listen\s*=\s*(/\S+)\s*$", re.M)


class PhpFpmService(IncludeDirService):
    reload_order = 20  # pools before the vhosts that use them
    profile_keys = (
        ProfileKey("php_conf", "/etc/php/{php}/fpm/php-fpm.conf", "path", "Main config."),
        ProfileKey("php_pool_dir", "/etc/php/{php}/fpm/pool.d", "path", "Managed pools."),
        ProfileKey(
            "php_test", ["php-fpm{php}", "-t", "-y", "{conf}"], "command", "Validates {conf}."
        ),
        ProfileKey("php_pid_file", "/run/php/php{php}-fpm.pid", "path", "The master's pid."),
        ProfileKey(
            "php_start",
            ["php-fpm{php}", "-y", "{conf}"],
            "command",
            "Starts PHP-FPM where there is no systemd (Prepare server, when it is not running).",
        ),
        ProfileKey("php_reload_timeout", 20, "seconds", "How long a reload may take."),
    )

    def __init__(self, version: str = "8.2") -> None:
        if not re.fullmatch(r"\d+\.\d+", version):
            raise ApplyError(f"{version!r} is not a PHP version")
        self.version = version
        self.name = self.label = f"php-fpm{version}"

    def main_conf(self, profile: Profile) -> str:
        return profile.php_conf.replace("{php}", self.version)

    def include_dir(self, profile: Profile) -> str:
        return profile.php_pool_dir.replace("{php}", self.version).rstrip("/")

    def test_argv(self, profile: Profile, conf: str) -> list[str]:
        return fill(profile.php_test, php=self.version, conf=conf)

    def include_hint(self, profile: Profile) -> str:
        return f"include={self.include_dir(profile)}/*.conf"

    def reload_step(self, run: ServiceRun) -> Step:
        sockets = sorted(
            {
                m.group(1).decode()
                for f in run.live_files().values()
                for m in LISTEN.finditer(f.content)
            }
        )
        timeout = run.profile.php_reload_timeout
        pid_file = run.profile.php_pid_file.replace("{php}", self.version)
        argv = ["sh", "-c", RELOAD_SCRIPT, "php-fpm-reload", pid_file, str(timeout)]
        return Step(argv, timeout + 30, stdin="".join(f"{x}\n" for x in sockets).encode())
