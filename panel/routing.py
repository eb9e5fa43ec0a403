"""Websocket routes. Each live page names its LiveView here (see docs/live-events.md)."""

from django.urls import path, re_path

from core.asgi import UnknownPathConsumer
from core.consumers import LiveConsumer
from core.live_views import DashboardLive, OperationDetailLive, OperationListLive
from dns.live import ZoneDetailLive
from monitoring.live import (
    AlertListLive,
    CheckListLive,
    ServerCardsLive,
    ServerMetricsLive,
    WindowListLive,
)
from servers.consumers import TerminalConsumer
from servers.live import ServerListLive
from vps.consumers import ConsoleConsumer
from vps.live import VpsMetricsLive
from websites.databases.live import DatabaseListLive, DatabaseUserListLive

websocket_urlpatterns = [
    path("ws/live/dashboard/", LiveConsumer.as_asgi(view=DashboardLive)),
    path("ws/live/operations/", LiveConsumer.as_asgi(view=OperationListLive)),
    path("ws/live/operations/<uuid:key>/", LiveConsumer.as_asgi(view=OperationDetailLive)),
    path("ws/live/servers/", LiveConsumer.as_asgi(view=ServerListLive)),
    path("ws/live/monitoring/", LiveConsumer.as_asgi(view=ServerCardsLive)),
    path("ws/live/monitoring/<uuid:key>/", LiveConsumer.as_asgi(view=ServerMetricsLive)),
    path("ws/live/alerts/", LiveConsumer.as_asgi(view=AlertListLive)),
    path("ws/live/checks/", LiveConsumer.as_asgi(view=CheckListLive)),
    path("ws/live/maintenance/", LiveConsumer.as_asgi(view=WindowListLive)),
    path("ws/live/zones/<uuid:key>/", LiveConsumer.as_asgi(view=ZoneDetailLive)),
    path("ws/live/databases/", LiveConsumer.as_asgi(view=DatabaseListLive)),
    path("ws/live/database-users/", LiveConsumer.as_asgi(view=DatabaseUserListLive)),
    path("ws/live/vps/<uuid:key>/metrics/", LiveConsumer.as_asgi(view=VpsMetricsLive)),
    # The API's event streams (?format=json), documented in docs/api.md.
    path("ws/operations/", LiveConsumer.as_asgi(view=OperationListLive)),
    path("ws/operations/<uuid:key>/", LiveConsumer.as_asgi(view=OperationDetailLive)),
    path("ws/servers/<uuid:uuid>/terminal/", TerminalConsumer.as_asgi()),
    path("ws/vps/<uuid:uuid>/console/serial/", ConsoleConsumer.as_asgi(kind="serial")),
    path("ws/vps/<uuid:uuid>/console/vnc/", ConsoleConsumer.as_asgi(kind="vnc")),
    re_path(r"", UnknownPathConsumer.as_asgi()),  # last: everything else answers 4404
]
