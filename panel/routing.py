from django.urls import path

from panel import consumers

websocket_urlpatterns = [
    path("ws/operations/", consumers.OperationListConsumer.as_asgi()),
    path("ws/operations/<uuid:uuid>/", consumers.OperationDetailConsumer.as_asgi()),
]
