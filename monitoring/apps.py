from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self):
        from core import schedules
        from core.sections import add_section
        from monitoring.views import server_metrics_section

        add_section(
            "servers.server_detail",
            "monitoring/partials/server_metrics.html",
            server_metrics_section,
            order=10,
        )

        # Collection itself runs every PANEL_MONITORING_INTERVAL seconds in its own loop
        # (manage.py collect_metrics, started by runpanel); rollups and pruning are jobs.
        schedules.every(5, "monitoring.tasks.roll_up", name="monitoring_rollup")
        schedules.every(60, "monitoring.tasks.prune", name="monitoring_prune")
        # Alerts are evaluated after each collection round (collect_metrics enqueues it);
        # this schedule covers sources that do not depend on rounds (certificates, checks).
        schedules.every(1, "monitoring.tasks.evaluate", name="monitoring_alerts")
        schedules.every(1, "monitoring.tasks.retry_deliveries", name="monitoring_deliveries")
        # Uptime checks that are due, in a bounded pool on a worker (never in a request).
        schedules.every(1, "monitoring.tasks.run_checks", name="monitoring_checks")
        # Maintenance windows opening and closing (collection rounds apply them too).
        schedules.every(1, "monitoring.tasks.apply_maintenance", name="monitoring_maintenance")

        from monitoring.alerts import register_source
        from monitoring.services import check_failing_source

        register_source("check_failing", check_failing_source, label="Uptime check failing")

        from core import sharing
        from monitoring.models import NotificationChannel

        # A team's channel: shared with colleagues, their rules can notify it (the secret
        # stays write-only, so a colleague who may only view it never reads it).
        sharing.register(NotificationChannel)
