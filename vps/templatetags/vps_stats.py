"""``{% vps_metrics vps %}``: the VPS page's live charts (vps/stats.py feeds them)."""

from __future__ import annotations

import json

from django import template

from core import events
from vps.stats import RANGES, SAMPLE_TOPIC

register = template.Library()

# What static/js/metrics.js draws for a VPS: [metric, label, colour] per series.
USAGE = [["cpu", "CPU %", "#0ea5e9"], ["mem_pct", "Memory %", "#8b5cf6"]]
IO = [
    ["disk_read", "Disk read B/s", "#f59e0b"],
    ["disk_write", "Disk write B/s", "#a16207"],
    ["net_rx", "Received B/s", "#10b981"],
    ["net_tx", "Sent B/s", "#ef4444"],
]


@register.inclusion_tag("vps/partials/vps_metrics.html")
def vps_metrics(vps) -> dict:
    return {
        "v": vps,
        # Read before the chart loads its series, so every later round is replayed to it.
        "live_since": events.current_seq(),
        "ranges": list(RANGES),
        "topic": SAMPLE_TOPIC,
        "usage": json.dumps(USAGE),
        "io": json.dumps(IO),
    }
