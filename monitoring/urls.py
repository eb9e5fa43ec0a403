"""Monitoring's pages, mounted at /monitoring/."""

from django.urls import path

from monitoring import views

urlpatterns = [
    path("", views.AlertList.as_view(), name="monitoring"),
    path("alerts/<uuid:uuid>/", views.AlertDetail.as_view(), name="alert"),
    path(
        "alerts/<uuid:uuid>/acknowledge/",
        views.AlertAcknowledge.as_view(),
        name="alert_acknowledge",
    ),
    path("alerts/<uuid:uuid>/silence/", views.AlertSilence.as_view(), name="alert_silence"),
    path("rules/", views.RuleList.as_view(), name="alert_rules"),
    path("rules/new/", views.RuleEdit.as_view(), name="alert_rule_add"),
    path("rules/<uuid:uuid>/", views.RuleEdit.as_view(), name="alert_rule"),
    path("rules/<uuid:uuid>/delete/", views.RuleDelete.as_view(), name="alert_rule_delete"),
    path("maintenance/", views.WindowList.as_view(), name="maintenance_windows"),
    path("maintenance/new/", views.WindowEdit.as_view(), name="maintenance_window_add"),
    path("maintenance/<uuid:uuid>/", views.WindowEdit.as_view(), name="maintenance_window"),
    path(
        "maintenance/<uuid:uuid>/delete/",
        views.WindowDelete.as_view(),
        name="maintenance_window_delete",
    ),
    path("channels/", views.ChannelList.as_view(), name="alert_channels"),
    path("channels/new/", views.ChannelEdit.as_view(), name="alert_channel_add"),
    path("channels/<uuid:uuid>/", views.ChannelEdit.as_view(), name="alert_channel"),
    path(
        "channels/<uuid:uuid>/delete/", views.ChannelDelete.as_view(), name="alert_channel_delete"
    ),
    path("channels/<uuid:uuid>/test/", views.ChannelTest.as_view(), name="alert_channel_test"),
    path("checks/", views.CheckList.as_view(), name="uptime_checks"),
    path("checks/new/", views.CheckEdit.as_view(), name="uptime_check_add"),
    path("checks/<uuid:uuid>/", views.CheckDetail.as_view(), name="uptime_check"),
    path("checks/<uuid:uuid>/edit/", views.CheckEdit.as_view(), name="uptime_check_edit"),
    path("checks/<uuid:uuid>/delete/", views.CheckDelete.as_view(), name="uptime_check_delete"),
    path("status/", views.StatusPageSettings.as_view(), name="status_settings"),
    path("status/<str:slug>/", views.PublicStatusPage.as_view(), name="status_page"),
]
