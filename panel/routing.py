from django.urls import path, re_path

from core import consumers
from core.asgi import UnknownPathConsumer
from servers.consumers import TerminalConsumer

websocket_urlpatterns = [
    path("ws/operations/", consumers.OperationListConsumer.as_asgi()),
    path("ws/operations/<uuid:uuid>/", consumers.OperationDetailConsumer.as_asgi()),
    path("ws/servers/<uuid:uuid>/terminal/", TerminalConsumer.as_asgi()),
    re_path(r"", UnknownPathConsumer.as_asgi()),  # last: everything else answers 4404
]
