"""The node_exporter collector: scrape ``/metrics`` and read the same figures the agentless
collector reads, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from monitoring.agentless import PSEUDO_FS, Reading, set_memory, set_mounts, whole_disk

MAX_BYTES = 8 << 20


class ExporterError(Exception):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def scrape(url: str, timeout: float) -> Reading:
    if not url.startswith(("http://", "https://")):
        raise ExporterError(f"{url!r} is not an http(s) URL", retryable=False)
    req = urllib.request.Request(url, headers={"Accept": "text/plain"})  # noqa: S310 - http(s)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s)
            body = resp.read(MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ExporterError(f"cannot scrape {url}: {exc}") from exc
    if len(body) > MAX_BYTES:
        raise ExporterError(f"{url} answered more than {MAX_BYTES} bytes", retryable=False)
    try:
        return parse(body.decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise ExporterError(f"{url} did not answer Prometheus text: {exc}") from exc


def parse(text: str) -> Reading:
    r = Reading()
    cpu_total = cpu_idle = 0.0
    cpus: set[str] = set()
    mem: dict[str, float] = {}
    fs: dict[str, dict] = {}
    disk_read = disk_write = net_rx = net_tx = 0.0
    have_disk = have_net = False
    boot = now = None
    ifaces: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name, labels, value = s.name, s.labels, s.value
            if name == "node_cpu_seconds_total":
                cpu_total += value
                cpus.add(labels.get("cpu", ""))
                if labels.get("mode") in ("idle", "iowait"):
                    cpu_idle += value
            elif name in ("node_load1", "node_load5", "node_load15"):
                r.gauges[name[5:]] = value
            elif name.startswith("node_memory_") and name.endswith("_bytes"):
                mem[name[12:-6]] = value
            elif name in ("node_filesystem_size_bytes", "node_filesystem_avail_bytes"):
                if labels.get("fstype") in PSEUDO_FS:
                    continue
                entry = fs.setdefault(labels.get("mountpoint", ""), {"fs": labels.get("fstype")})
                entry["size" if name.endswith("size_bytes") else "avail"] = value
            elif name in ("node_disk_read_bytes_total", "node_disk_written_bytes_total"):
                if whole_disk(labels.get("device", "")):
                    have_disk = True
                    if "read" in name:
                        disk_read += value
                    else:
                        disk_write += value
            elif name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total"):
                dev = labels.get("device", "")
                key = "rx" if "receive" in name else "tx"
                ifaces.setdefault(dev, {})[key] = value
                if dev != "lo":
                    have_net = True
                    if key == "rx":
                        net_rx += value
                    else:
                        net_tx += value
            elif name == "node_boot_time_seconds":
                boot = value
            elif name == "node_time_seconds":
                now = value
            elif name == "node_processes_pids":
                r.gauges["procs"] = value
    if cpus:
        r.counters.update(cpu_total=cpu_total, cpu_busy=cpu_total - cpu_idle)
        r.gauges["cpus"] = float(len(cpus))
    if "MemTotal" in mem:
        set_memory(
            r,
            mem["MemTotal"],
            mem.get("MemAvailable", mem.get("MemFree", 0)),
            mem.get("SwapTotal", 0),
            mem.get("SwapFree", 0),
        )
    mounts = {
        point: {"fs": e["fs"], "size": e["size"], "used": e["size"] - e["avail"]}
        for point, e in fs.items()
        if e.get("size") and "avail" in e
    }
    set_mounts(r, mounts)
    if have_disk:
        r.counters.update(disk_read=disk_read, disk_write=disk_write)
    if have_net:
        r.counters.update(net_rx=net_rx, net_tx=net_tx)
    if ifaces:
        r.detail["interfaces"] = ifaces
    if boot is not None and now is not None:
        r.gauges["uptime"] = now - boot
    return r
