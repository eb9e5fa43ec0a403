"""Alert rules on VPS figures (docs/vps.md, "Statistics"): a monitoring alert rule of kind
``vps_metric`` watches one figure of the VPS statistics (``cpu``, ``mem_pct``, ``disk_read``
...) against its threshold, over its duration, for every running VPS its owner may see,
like the ``metric`` kind does for servers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from core.policy import restrict
from vps.models import Vps, VpsSample
from vps.stats import ROLLED, ROUND_SECONDS

# The figures a rule may name: what every round stores per running VPS.
METRICS = (*ROLLED, "vcpus", "mem_total")


def vps_metric_source(rule, now: datetime) -> Iterable:
    """Every sample of the last ``duration`` seconds past the threshold (with no duration:
    the newest one); the window must be covered by samples, as for servers."""
    from monitoring.alerts import COMPARE, Finding

    if rule.metric not in METRICS or rule.threshold is None:
        return
    compare = COMPARE[rule.comparison]
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
    by_vps: dict[int, list] = defaultdict(list)
    for vps_id, at, values in rows:
        by_vps[vps_id].append((at, (values or {}).get(rule.metric)))
    for vps_id, points in by_vps.items():
        if rule.duration:
            held_from = now - timedelta(seconds=rule.duration)
            window = [p for p in points if p[0] >= held_from]
            covered = points[0][0] <= held_from + timedelta(seconds=ROUND_SECONDS / 2)
        else:
            window, covered = points[-1:], True
        values = [v for _at, v in window]
        if (
            not covered
            or not values
            or any(v is None or not compare(v, rule.threshold) for v in values)
        ):
            continue
        vps, latest = vpses[vps_id], values[-1]
        yield Finding(
            subject=f"vps:{vps.uuid.hex}",
            label=vps.hostname,
            message=f"{vps.hostname}: {rule.metric} is {latest:g} "
            f"({rule.get_comparison_display()} {rule.threshold:g}"
            + (f" for {rule.duration}s)" if rule.duration else ")"),
            value=latest,
        )
