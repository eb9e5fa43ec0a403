"""The websites area of the portal. The certificates and databases subpackages add their
pages with one ``path(..., include(...))`` line each."""

from django.urls import include, path

from websites import views

urlpatterns = [
    path("", views.WebsiteList.as_view(), name="websites"),
    path("add/", views.WebsiteCreate.as_view(), name="website-add"),
    path("plans/", views.PlanList.as_view(), name="plans"),
    path("<uuid:uuid>/", views.WebsiteDetail.as_view(), name="website"),
    path("<uuid:uuid>/php/", views.SwitchPhp.as_view(), name="website-php"),
    path("<uuid:uuid>/aliases/", views.EditAliases.as_view(), name="website-aliases"),
    path("<uuid:uuid>/auth/protect/", views.ProtectPath.as_view(), name="website-auth-protect"),
    path(
        "<uuid:uuid>/auth/unprotect/", views.UnprotectPath.as_view(), name="website-auth-unprotect"
    ),
    path("<uuid:uuid>/auth/user/", views.SetAuthUser.as_view(), name="website-auth-user"),
    path(
        "<uuid:uuid>/auth/user/remove/",
        views.RemoveAuthUser.as_view(),
        name="website-auth-user-remove",
    ),
    path("<uuid:uuid>/sftp-password/", views.SftpPassword.as_view(), name="website-sftp-password"),
    path("<uuid:uuid>/ssh-key/", views.SshKey.as_view(), name="website-ssh-key"),
    path("<uuid:uuid>/suspend/", views.SuspendWebsite.as_view(), name="website-suspend"),
    path("<uuid:uuid>/unsuspend/", views.UnsuspendWebsite.as_view(), name="website-unsuspend"),
    path("<uuid:uuid>/retry/", views.RetryWebsite.as_view(), name="website-retry"),
    path("<uuid:uuid>/logs/", views.WebsiteLogs.as_view(), name="website-logs"),
    path("<uuid:uuid>/app/start/", views.StartApp.as_view(), name="website-app-start"),
    path("<uuid:uuid>/app/stop/", views.StopApp.as_view(), name="website-app-stop"),
    path("<uuid:uuid>/app/restart/", views.RestartApp.as_view(), name="website-app-restart"),
    path("<uuid:uuid>/app/status/", views.AppStatus.as_view(), name="website-app-status"),
    path("<uuid:uuid>/app/env/", views.EditAppEnv.as_view(), name="website-app-env"),
    path("<uuid:uuid>/app/command/", views.EditStartCommand.as_view(), name="website-app-command"),
    path("<uuid:uuid>/logs/follow/", views.FollowLogs.as_view(), name="website-logs-follow"),
    path("<uuid:uuid>/delete/", views.WebsiteDelete.as_view(), name="website-delete"),
    path("databases/", include("websites.databases.urls")),
    path("certificates/", include("websites.certificates.urls")),
]
