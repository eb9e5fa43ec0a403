from django.urls import path

from core import consumers
from servers.consumers import TerminalConsumer

websocket_urlpatterns = [
    path("ws/operations/", consumers.OperationListConsumer.as_asgi()),
    path("ws/operations/<uuid:uuid>/", consumers.OperationDetailConsumer.as_asgi()),
    path("ws/servers/<uuid:uuid>/terminal/", TerminalConsumer.as_asgi()),
]
