from django.urls import path

from servers import views

urlpatterns = [
    path("", views.ServerList.as_view(), name="servers"),
    path("add/", views.server_form, name="server-add"),
    path("<uuid:uuid>/", views.ServerDetail.as_view(), name="server"),
    path("<uuid:uuid>/edit/", views.server_form, name="server-edit"),
    path("<uuid:uuid>/delete/", views.server_delete, name="server-delete"),
    path("<uuid:uuid>/accept-host-key/", views.accept_host_key, name="server-accept-key"),
    path("<uuid:uuid>/firewall/", views.rule_add, name="server-rule-add"),
    path(
        "<uuid:uuid>/firewall/<uuid:rule_uuid>/delete/",
        views.rule_delete,
        name="server-rule-delete",
    ),
    path("<uuid:uuid>/terminal/", views.terminal, name="server-terminal"),
    path("<uuid:uuid>/terminal/ticket/", views.terminal_ticket, name="server-terminal-ticket"),
    path("<uuid:uuid>/<str:action>/", views.server_action, name="server-action"),
]
