"""Facts about a server, read with plain commands (argv lists) and /proc."""

from __future__ import annotations

import re

from servers.transport import Transport

# Programs whose presence the facts report (label -> binary name).
PROGRAMS = {
    "nginx": "nginx",
    "mariadb": "mariadbd",
    "mysql": "mysqld",
    "postgresql": "postgres",
    "named": "named",
    "pdns": "pdns_server",
    "supervisord": "supervisord",
    "systemd": "systemctl",
    "nft": "nft",
    "restic": "restic",
}


def gather(transport: Transport) -> dict:
    facts: dict = {}
    os_release = (transport.read_file("/etc/os-release") or b"").decode(errors="replace")
    info = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', os_release, re.M))
    facts["distribution"] = info.get("ID", "unknown")
    facts["version"] = info.get("VERSION_ID", "")
    facts["pretty_name"] = info.get("PRETTY_NAME", "")
    facts["kernel"] = transport.run(["uname", "-r"]).check().stdout.strip()
    facts["hostname"] = transport.run(["uname", "-n"]).check().stdout.strip()
    cpuinfo = (transport.read_file("/proc/cpuinfo") or b"").decode(errors="replace")
    facts["cpu_count"] = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or None
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    facts["cpu_model"] = model.group(1).strip() if model else ""
    meminfo = (transport.read_file("/proc/meminfo") or b"").decode()
    total = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    facts["memory_bytes"] = int(total.group(1)) * 1024 if total else None
    facts["disks"] = _disks(transport)
    facts["services"] = _services(transport)
    # systemctl may be installed where systemd does not run (containers): apps then go to
    # supervisord (websites/appsites.py).
    facts["systemd_running"] = transport.run(["test", "-d", "/run/systemd/system"]).code == 0
    facts["php_versions"] = _php_versions(transport)
    return facts


def _disks(transport: Transport) -> list[dict]:
    out = transport.run(["df", "-P", "-B1", "-x", "tmpfs", "-x", "devtmpfs", "-x", "overlay"])
    disks = []
    for line in out.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 6 and parts[1].isdigit():
            disks.append(
                {
                    "device": parts[0],
                    "size": int(parts[1]),
                    "used": int(parts[2]),
                    "mount": parts[5],
                }
            )
    return disks


def _services(transport: Transport) -> dict[str, bool]:
    # `command -v` is a shell builtin; `which` ships with Debian (debianutils).
    names = list(PROGRAMS.values())
    out = transport.run(["which", *names]).stdout.split()
    found = {p.rsplit("/", 1)[-1] for p in out}
    return {label: binary in found for label, binary in PROGRAMS.items()}


def _php_versions(transport: Transport) -> list[str]:
    out = transport.run(["ls", "-1", "/etc/php"])
    return sorted(v for v in out.stdout.split() if re.fullmatch(r"\d+\.\d+", v))
