"""Live view of one zone's page (routed in panel/routing.py): its status block (serial,
publish status with the nameserver's words, NS verification) is re-rendered when the zone
changes, e.g. when a publish Operation ends."""

from __future__ import annotations

from django.template.loader import render_to_string

from core.live import Fragment, LiveView
from core.policy import restrict
from dns.models import Zone

STATUS = "dns/partials/zone_status.html"


class ZoneDetailLive(LiveView):
    topics = ("dns.zone",)

    def allowed(self) -> bool:
        return restrict(Zone, self.user).filter(uuid=self.key).exists()

    def fragments(self, keys):
        if self.key not in keys.get("dns.zone", ()):
            return [], []
        zone = restrict(Zone, self.user).filter(uuid=self.key).first()
        if zone is None:
            return [], []
        hex_ = zone.uuid.hex
        return [Fragment(f"zone-{hex_}-status", render_to_string(STATUS, {"zone": zone}))], []
