from django.urls import path

from accounts.api import views

# (prefix, viewset, basename): registered on the one API router by panel/api/urls.py.
routes = [
    ("users", views.UserViewSet, "user"),
    ("tokens", views.ApiTokenViewSet, "apitoken"),
    ("audit", views.AuditViewSet, "auditentry"),
]
urlpatterns = [path("me/", views.MeView.as_view(), name="api-me")]
