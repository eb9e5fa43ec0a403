"""The websites area of the portal. The certificates and databases subpackages add their
pages with one ``path(..., include(...))`` line each."""

from django.urls import include, path

from websites import views

urlpatterns = [
    path("", views.WebsiteList.as_view(), name="websites"),
    path("databases/", include("websites.databases.urls")),
    path("certificates/", include("websites.certificates.urls")),
]
