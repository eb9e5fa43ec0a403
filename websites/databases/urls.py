"""Mounted by websites/urls.py at /websites/databases/."""

from django.urls import path

from websites.databases import views

urlpatterns = [
    path("", views.DatabaseList.as_view(), name="databases"),
    path("add/", views.DatabaseCreate.as_view(), name="database-add"),
    path("<uuid:uuid>/", views.DatabaseDetail.as_view(), name="database"),
    path("<uuid:uuid>/delete/", views.DatabaseDelete.as_view(), name="database-delete"),
    path("<uuid:uuid>/users/add/", views.DatabaseAddUser.as_view(), name="database-user-add"),
    path("<uuid:uuid>/grants/add/", views.DatabaseGrantAdd.as_view(), name="database-grant-add"),
    path(
        "grants/<uuid:uuid>/revoke/",
        views.DatabaseGrantRevoke.as_view(),
        name="database-grant-revoke",
    ),
    path("users/", views.DatabaseUserList.as_view(), name="database-users"),
    path("users/<uuid:uuid>/", views.DatabaseUserDetail.as_view(), name="database-user"),
    path(
        "users/<uuid:uuid>/rotate/",
        views.DatabaseUserRotate.as_view(),
        name="database-user-rotate",
    ),
    path(
        "users/<uuid:uuid>/delete/", views.DatabaseUserDelete.as_view(), name="database-user-delete"
    ),
    path("servers/", views.DatabaseServerList.as_view(), name="database-servers"),
    path("servers/add/", views.DatabaseServerEdit.as_view(), name="database-server-add"),
    path("servers/<uuid:uuid>/", views.DatabaseServerDetail.as_view(), name="database-server"),
    path(
        "servers/<uuid:uuid>/edit/",
        views.DatabaseServerEdit.as_view(),
        name="database-server-edit",
    ),
    path(
        "servers/<uuid:uuid>/delete/",
        views.DatabaseServerDelete.as_view(),
        name="database-server-delete",
    ),
    path(
        "servers/<uuid:uuid>/check/",
        views.DatabaseServerCheck.as_view(),
        name="database-server-check",
    ),
]
