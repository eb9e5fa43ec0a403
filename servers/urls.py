from django.urls import path

from servers import views

urlpatterns = [
    path("", views.ServerList.as_view(), name="servers"),
    path("add/", views.ServerEdit.as_view(), name="server-add"),
    path("<uuid:uuid>/", views.ServerDetail.as_view(), name="server"),
    path("<uuid:uuid>/edit/", views.ServerEdit.as_view(), name="server-edit"),
    path("<uuid:uuid>/delete/", views.ServerDelete.as_view(), name="server-delete"),
    path("<uuid:uuid>/accept-host-key/", views.AcceptHostKey.as_view(), name="server-accept-key"),
    path("<uuid:uuid>/test/", views.TestConnection.as_view(), name="server-test"),
    path("<uuid:uuid>/facts/", views.GatherFacts.as_view(), name="server-facts"),
    path("<uuid:uuid>/apply/", views.Apply.as_view(), name="server-apply"),
    path("<uuid:uuid>/prepare/", views.PrepareServer.as_view(), name="server-prepare"),
    path("<uuid:uuid>/bans/", views.RefreshBans.as_view(), name="server-bans"),
    path("<uuid:uuid>/unban/", views.Unban.as_view(), name="server-unban"),
    path("<uuid:uuid>/drift/", views.CheckDrift.as_view(), name="server-drift"),
    path("<uuid:uuid>/firewall/", views.rule_add, name="server-rule-add"),
    path(
        "<uuid:uuid>/firewall/<uuid:rule_uuid>/delete/",
        views.rule_delete,
        name="server-rule-delete",
    ),
    path("<uuid:uuid>/terminal/", views.terminal, name="server-terminal"),
    path("<uuid:uuid>/terminal/ticket/", views.terminal_ticket, name="server-terminal-ticket"),
]
