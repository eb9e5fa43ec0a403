"""Joined to the API router by websites/api/urls.py."""

from websites.databases.api import views

routes = [
    ("databases", views.DatabaseViewSet, "database"),
    ("database-users", views.DatabaseUserViewSet, "databaseuser"),
    ("database-grants", views.DatabaseGrantViewSet, "databasegrant"),
    ("database-servers", views.DatabaseServerViewSet, "databaseserver"),
]
