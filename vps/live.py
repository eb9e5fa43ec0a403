"""Live views of the VPS area (routed in panel/routing.py)."""

from __future__ import annotations

from core.live import LiveView
from core.policy import restrict
from vps.models import Vps
from vps.stats import SAMPLE_TOPIC


class VpsMetricsLive(LiveView):
    """One VPS's statistics: JSON clients (``?format=json``, the page's charts) get every
    round's sample of it as the event's data. Whoever may not see the VPS is refused (404)."""

    topics = (SAMPLE_TOPIC,)

    def allowed(self) -> bool:
        return restrict(Vps, self.user).filter(uuid=self.key).exists()

    def fragments(self, keys):
        return [], []  # the charts draw the events' data; nothing is rendered server-side
