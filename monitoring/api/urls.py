from monitoring.api import views

routes = [
    ("metrics", views.MetricsViewSet, "metrics"),
    ("checks", views.CheckViewSet, "check"),
    ("alerts", views.AlertViewSet, "alert"),
    ("alert-rules", views.RuleViewSet, "alert-rule"),
    ("channels", views.ChannelViewSet, "channel"),
    ("maintenance-windows", views.MaintenanceWindowViewSet, "maintenance-window"),
]
urlpatterns: list = []
