"""Facts about a server, read with plain commands (argv lists) and /proc."""

from __future__ import annotations

import re

from servers.transport import Transport

SERVICES = {
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


def gather(t: Transport) -> dict:
    facts: dict = {}
    os_release = (t.read_file("/etc/os-release") or b"").decode(errors="replace")
    info = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', os_release, re.M))
    facts["distribution"] = info.get("ID", "unknown")
    facts["version"] = info.get("VERSION_ID", "")
    facts["pretty_name"] = info.get("PRETTY_NAME", "")
    facts["kernel"] = t.run(["uname", "-r"]).check().stdout.strip()
    facts["hostname"] = t.run(["uname", "-n"]).check().stdout.strip()
    cpuinfo = (t.read_file("/proc/cpuinfo") or b"").decode(errors="replace")
    facts["cpu_count"] = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or None
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    facts["cpu_model"] = model.group(1).strip() if model else ""
    meminfo = (t.read_file("/proc/meminfo") or b"").decode()
    total = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    facts["memory_bytes"] = int(total.group(1)) * 1024 if total else None
    facts["disks"] = _disks(t)
    facts["services"] = _services(t)
    facts["php_versions"] = _php_versions(t)
    return facts


def _disks(t: Transport) -> list[dict]:
    out = t.run(["df", "-P", "-B1", "-x", "tmpfs", "-x", "devtmpfs", "-x", "overlay"])
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


def _services(t: Transport) -> dict[str, bool]:
    # `command -v` is a shell builtin; `which` ships with Debian (debianutils).
    names = list(SERVICES.values())
    out = t.run(["which", *names]).stdout.split()
    found = {p.rsplit("/", 1)[-1] for p in out}
    return {label: binary in found for label, binary in SERVICES.items()}


def _php_versions(t: Transport) -> list[str]:
    out = t.run(["ls", "-1", "/etc/php"])
    return sorted(v for v in out.stdout.split() if re.fullmatch(r"\d+\.\d+", v))
