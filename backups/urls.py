"""The backups area of the portal, mounted at /backups/."""

from django.urls import path

from backups import views

urlpatterns = [
    path("", views.BackupJobList.as_view(), name="backups"),
    path("add/", views.BackupJobEdit.as_view(), name="backup-job-add"),
    path("<uuid:uuid>/", views.BackupJobDetail.as_view(), name="backup-job"),
    path("<uuid:uuid>/edit/", views.BackupJobEdit.as_view(), name="backup-job-edit"),
    path("<uuid:uuid>/delete/", views.BackupJobDelete.as_view(), name="backup-job-delete"),
    path("<uuid:uuid>/run/", views.BackupJobRun.as_view(), name="backup-job-run"),
    path("<uuid:uuid>/restore/", views.BackupRestore.as_view(), name="backup-job-restore"),
    path("<uuid:uuid>/browse/", views.BackupBrowse.as_view(), name="backup-job-browse"),
    path("targets/", views.BackupTargetList.as_view(), name="backup-targets"),
    path("targets/add/", views.BackupTargetEdit.as_view(), name="backup-target-add"),
    path("targets/<uuid:uuid>/", views.BackupTargetDetail.as_view(), name="backup-target"),
    path("targets/<uuid:uuid>/edit/", views.BackupTargetEdit.as_view(), name="backup-target-edit"),
    path(
        "targets/<uuid:uuid>/delete/",
        views.BackupTargetDelete.as_view(),
        name="backup-target-delete",
    ),
    path(
        "targets/<uuid:uuid>/check/", views.BackupTargetCheck.as_view(), name="backup-target-check"
    ),
    path(
        "targets/<uuid:uuid>/password/",
        views.BackupTargetPassword.as_view(),
        name="backup-target-password",
    ),
    path(
        "targets/<uuid:uuid>/verify/",
        views.BackupTargetVerify.as_view(),
        name="backup-target-verify",
    ),
]
