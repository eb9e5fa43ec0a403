"""The agentless collector: one constant script, one round trip, parsed here.

The script takes no input at all (nothing is interpolated into it): it prints the files it
reads between ``@section`` markers. Everything is parsed in Python into a ``Reading``:
gauges (values as they are), counters (monotonic totals the round turns into rates from
the previous round's) and detail (per mount, per interface).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from servers.transport import Transport, TransportError

SCRIPT = r"""
echo @stat; cat /proc/stat
echo @loadavg; cat /proc/loadavg
echo @meminfo; cat /proc/meminfo
echo @uptime; cat /proc/uptime
echo @diskstats; cat /proc/diskstats 2>/dev/null
echo @netdev; cat /proc/net/dev
echo @procs; set -- /proc/[0-9]*; echo $#
echo @df; timeout 10 df -P -k -T 2>/dev/null
echo @end
"""

# Filesystems that hold no customer data (memory, kernel, images).
PSEUDO_FS = {
    "tmpfs",
    "devtmpfs",
    "proc",
    "sysfs",
    "squashfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "efivarfs",
    "ramfs",
    "nsfs",
    "fuse.lxcfs",
}
# Whole disks only: partitions and virtual devices would count the same bytes twice.
_PARTITION = re.compile(r"^((sd|vd|xvd|hd)[a-z]+\d+|(nvme\d+n\d+|mmcblk\d+)p\d+)$")
_SKIP_DEV = re.compile(r"^(loop|ram|sr|fd|zram|dm-|md)")
SECTOR = 512


@dataclass
class Reading:
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    detail: dict = field(default_factory=dict)


def collect(transport: Transport, timeout: float) -> Reading:
    res = transport.run(["sh", "-c", SCRIPT], timeout=timeout)
    if "@end" not in res.stdout:
        raise TransportError(f"the metrics script failed: {(res.stderr or res.stdout)[:300]}")
    return parse(res.stdout)


def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = line[1:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def parse(text: str) -> Reading:
    parts = sections(text)
    r = Reading()
    _stat(parts.get("stat", []), r)
    _loadavg(parts.get("loadavg", []), r)
    _meminfo(parts.get("meminfo", []), r)
    _uptime(parts.get("uptime", []), r)
    _diskstats(parts.get("diskstats", []), r)
    _netdev(parts.get("netdev", []), r)
    procs = parts.get("procs", [])
    if procs and procs[0].strip().isdigit():
        r.gauges["procs"] = float(procs[0])
    _df(parts.get("df", []), r)
    return r


def _stat(lines: list[str], r: Reading) -> None:
    for line in lines:
        f = line.split()
        if f and f[0] == "cpu":
            ticks = [float(x) for x in f[1:9]]  # user nice system idle iowait irq softirq steal
            total = sum(ticks)
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            r.counters["cpu_total"] = total
            r.counters["cpu_busy"] = total - idle
            if len(ticks) > 4:
                r.counters["cpu_iowait"] = ticks[4]
        elif f and f[0].startswith("cpu") and f[0][3:].isdigit():
            r.gauges["cpus"] = r.gauges.get("cpus", 0) + 1


def _loadavg(lines: list[str], r: Reading) -> None:
    if lines:
        f = lines[0].split()
        r.gauges.update(load1=float(f[0]), load5=float(f[1]), load15=float(f[2]))


def _meminfo(lines: list[str], r: Reading) -> None:
    kb = {}
    for line in lines:
        name, _, rest = line.partition(":")
        f = rest.split()
        if f:
            kb[name] = float(f[0]) * 1024
    if "MemTotal" in kb:
        total = kb["MemTotal"]
        available = kb.get("MemAvailable", kb.get("MemFree", 0))
        set_memory(r, total, available, kb.get("SwapTotal", 0), kb.get("SwapFree", 0))


def set_memory(r: Reading, total: float, available: float, swap_total: float, swap_free: float):
    used = total - available
    r.gauges.update(mem_total=total, mem_used=used, mem_pct=_pct(used, total))
    r.gauges.update(
        swap_total=swap_total,
        swap_used=swap_total - swap_free,
        swap_pct=_pct(swap_total - swap_free, swap_total),
    )


def _uptime(lines: list[str], r: Reading) -> None:
    if lines and lines[0].split():
        r.gauges["uptime"] = float(lines[0].split()[0])


def whole_disk(name: str) -> bool:
    return not _SKIP_DEV.match(name) and not _PARTITION.match(name)


def _diskstats(lines: list[str], r: Reading) -> None:
    read = written = 0.0
    for line in lines:
        f = line.split()
        if len(f) < 10 or not whole_disk(f[2]):
            continue
        read += float(f[5]) * SECTOR
        written += float(f[9]) * SECTOR
    if lines:
        r.counters.update(disk_read=read, disk_write=written)


def _netdev(lines: list[str], r: Reading) -> None:
    rx = tx = 0.0
    ifaces = {}
    for line in lines:
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        name, f = name.strip(), rest.split()
        if len(f) < 9:
            continue
        ifaces[name] = {"rx": float(f[0]), "tx": float(f[8])}
        if name != "lo":
            rx += float(f[0])
            tx += float(f[8])
    if ifaces:
        r.counters.update(net_rx=rx, net_tx=tx)
        r.detail["interfaces"] = ifaces


def _df(lines: list[str], r: Reading) -> None:
    mounts = {}
    for line in lines[1:]:
        f = line.split(None, 6)
        if len(f) < 7 or f[1] in PSEUDO_FS or not f[3].isdigit():
            continue
        used, avail = float(f[3]) * 1024, float(f[4]) * 1024
        mounts[f[6]] = {"fs": f[1], "size": used + avail, "used": used}
    set_mounts(r, mounts)


def set_mounts(r: Reading, mounts: dict) -> None:
    """Disk use is the fullest mount's (what fills up first), with the totals beside it."""
    if not mounts:
        return
    r.detail["mounts"] = mounts
    fullest = max(mounts.values(), key=lambda m: _pct(m["used"], m["size"]))
    r.gauges["disk_pct"] = _pct(fullest["used"], fullest["size"])
    r.gauges["disk_total"] = sum(m["size"] for m in mounts.values())
    r.gauges["disk_used"] = sum(m["used"] for m in mounts.values())


def _pct(part: float, whole: float) -> float:
    return round(part / whole * 100, 2) if whole else 0.0
