from django.apps import AppConfig


class BackupsConfig(AppConfig):
    """Backups and restores with restic (docs/backups.md)."""

    name = "backups"
    label = "backups"
    verbose_name = "Backups"

    def ready(self):
        from django.apps import apps

        from backups.sections import website_backups
        from core.schedules import every
        from core.sections import add_section

        add_section(
            "websites.website_detail", "backups/partials/website_backups.html", website_backups
        )

        every(15, "backups.tasks.run_due", name="start due backups")
        every(7 * 1440, "backups.tasks.verify_all", name="check backup repositories")
        every(7 * 1440, "backups.tasks.test_restores", name="test restores of backups")
        if apps.is_installed("monitoring"):
            from backups.tasks import backup_alert_source
            from monitoring.alerts import register_source

            register_source("backup_missing", backup_alert_source, label="Backup missing or failed")
