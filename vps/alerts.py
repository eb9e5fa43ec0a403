"""Alert rules on VPS figures (docs/vps.md, "Statistics"): a monitoring alert rule of kind
``vps_metric`` watches one figure of the VPS statistics (``cpu``, ``mem_pct``, ``disk_read``
...) against its threshold, over its duration, for every running VPS its owner may see,
like the ``metric`` kind does for servers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from core.policy import restrict
from vps.models import Vps, VpsSample
from vps.stats import ROLLED, ROUND_SECONDS

# The figures a rule may name: what every round stores per running VPS.
METRICS = (*ROLLED, "vcpus", "mem_total")


def vps_metric_source(rule, now: datetime) -> Iterable:
    """Every sample of the last ``duration`` seconds past the threshold (with no duration:
    the newest one); the window must be covered by samples: the servers' test
    (``monitoring.alerts.held_past_threshold``) on the VPS samples."""
    from monitoring.alerts import Finding, held_past_threshold

    if rule.metric not in METRICS or rule.threshold is None:
        return
    vpses = {
        v.pk: v
        for v in restrict(Vps, rule.owner)
        .filter(state=Vps.State.RUNNING)
        .only("pk", "uuid", "hostname")
    }
    if not vpses:
        return
    since = now - timedelta(seconds=rule.duration + ROUND_SECONDS)
    rows = (
        VpsSample.objects.filter(vps_id__in=list(vpses), at__gte=since, at__lte=now)
        .order_by("vps_id", "at")
        .values_list("vps_id", "at", "values")
    )
    for vps_id, latest in held_past_threshold(rule, rows, now, ROUND_SECONDS):
        vps = vpses[vps_id]
        yield Finding(
            subject=f"vps:{vps.uuid.hex}",
            label=vps.hostname,
            message=f"{vps.hostname}: {rule.metric} is {latest:g} "
            f"({rule.get_comparison_display()} {rule.threshold:g}"
            + (f" for {rule.duration}s)" if rule.duration else ")"),
            value=latest,
        )
