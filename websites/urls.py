from django.urls import include, path

from core import views

urlpatterns = [
    path("", views.area, {"area": "websites"}, name="websites"),
    path("databases/", include("websites.databases.urls")),
]
