"""Live views of monitoring (routed in panel/routing.py): the dashboard's server cards and
one server's metrics (its card, and the JSON samples its charts draw). Both hear the
samples each round announces (``monitoring.sample``) and the servers' own changes (status)."""

from __future__ import annotations

from django.template.loader import render_to_string

from core.live import Fragment, LiveView, RowList
from core.policy import restrict
from monitoring.checks import uptime
from monitoring.collector import SAMPLE_TOPIC
from monitoring.filters import AlertFilter, CheckFilter, MaintenanceWindowFilter
from monitoring.models import Alert, Check, MaintenanceWindow
from servers.models import Server

CARD = "monitoring/partials/server_card.html"
SERVER_TOPIC = "servers.server"


def card_id(key: str) -> str:
    return f"mon-{key}-card"


class ServerCardsLive(RowList):
    """Every server card the user may see: a card is re-rendered when its server reports."""

    model = Server
    row_template = CARD
    row_name = "s"
    topics = (SERVER_TOPIC, SAMPLE_TOPIC)

    def row_id(self, key: str) -> str:
        return card_id(key)

    def queryset(self):
        return super().queryset().select_related("monitor")

    def fragments(self, keys):
        merged = set(keys.get(SERVER_TOPIC, ())) | set(keys.get(SAMPLE_TOPIC, ()))
        return super().fragments({SERVER_TOPIC: merged})


class ServerMetricsLive(LiveView):
    """One server's page: its card; API clients (``?format=json``, the charts) get every
    sample's values as the event's data."""

    topics = (SAMPLE_TOPIC, SERVER_TOPIC)

    def allowed(self) -> bool:
        return restrict(Server, self.user).filter(uuid=self.key).exists()

    def fragments(self, keys):
        if not any(self.key in keys.get(topic, ()) for topic in self.topics):
            return [], []
        server = restrict(Server, self.user).select_related("monitor").filter(uuid=self.key)
        server = server.first()
        if server is None:
            return [], [card_id(self.key)]
        html = render_to_string(CARD, {"s": server, "user": self.user})
        return [Fragment(card_id(self.key), html)], []


class AlertListLive(RowList):
    """The alert list: an alert firing, resolving or being acknowledged re-renders its row;
    a new one makes the page re-fetch (firing ones are listed first, not newest first)."""

    model = Alert
    row_template = "monitoring/partials/alert_row.html"
    row_name = "row"
    refetch_new = True

    def row_id(self, key: str) -> str:
        return f"alert-{key}-row"

    def queryset(self):
        return super().queryset().select_related("rule")

    def filtered(self, qs):
        return AlertFilter(self.page, queryset=qs).qs


class CheckListLive(RowList):
    """The uptime check list: each run of a check re-renders its row (status, response time,
    uptime shares)."""

    model = Check
    row_template = "monitoring/partials/check_row.html"
    row_name = "row"
    refetch_new = True  # sorted by name

    def row_id(self, key: str) -> str:
        return f"check-{key}-row"

    def filtered(self, qs):
        return CheckFilter(self.page, queryset=qs).qs

    def context(self, obj) -> dict:
        obj.uptime = uptime([obj]).get(obj.pk, {"24h": None, "30d": None})
        return super().context(obj)


class WindowListLive(RowList):
    """The maintenance window list: an edited window re-renders its row; a new or deleted
    one makes the page re-fetch (sorted by start)."""

    model = MaintenanceWindow
    row_template = "monitoring/partials/window_row.html"
    row_name = "row"
    refetch_new = True

    def row_id(self, key: str) -> str:
        return f"window-{key}-row"

    def queryset(self):
        return super().queryset().select_related("server")

    def filtered(self, qs):
        return MaintenanceWindowFilter(self.page, queryset=qs).qs
