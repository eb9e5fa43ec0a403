from backups.api import views

routes = [
    ("backup-targets", views.BackupTargetViewSet, "backuptarget"),
    ("backup-jobs", views.BackupJobViewSet, "backupjob"),
    ("backup-runs", views.BackupRunViewSet, "backuprun"),
]
