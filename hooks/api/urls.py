from hooks.api import views

routes = [
    ("webhooks", views.WebhookViewSet, "webhook"),
    ("webhook-deliveries", views.DeliveryViewSet, "webhook-delivery"),
]
urlpatterns: list = []
