from monitoring.api import views

routes = [("metrics", views.MetricsViewSet, "metrics")]
urlpatterns: list = []
